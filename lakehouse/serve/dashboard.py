"""The terminal dashboard of the Silver tables: plain text, amounts in euros, columns aligned."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from lakehouse.platform.delta import delta_table_exists
from lakehouse.platform.paths import Paths
from lakehouse.serve import web_tables as wt
from lakehouse.serve.numbers import euros, share
from lakehouse.serve.safe_text import for_terminal
from lakehouse.silver.tables import SILVER_TABLES, TIERS

TOP_CLIENTS = 10


def table(headers: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    """Rows under headers, each column as wide as its widest cell; columns in ``right`` right-aligned."""
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows)]

    def line(cells: list[str]) -> str:
        return "  ".join(str(c).rjust(w) if i in right else str(c).ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    return [line(headers), line(["-" * w for w in widths]), *[line(r) for r in rows]]


@dataclass
class ClientCounts:
    """Counts over the whole clients table."""

    clients: int
    loyal: int
    tiers: dict[str, int]

    @classmethod
    def of(cls, clients: list[dict]) -> "ClientCounts":
        return cls(len(clients), sum(1 for c in clients if c["est_client_fidele"]),
                   {t: sum(1 for c in clients if c["segment_depense"] == t) for t in TIERS})


@dataclass
class SilverSnapshot:
    """What the dashboard shows, read from the Silver tables: the top clients and the counts of all."""

    clients: list[dict]
    pays: list[dict]
    segments: list[dict]
    ventes_jour: list[dict]
    counts: ClientCounts


def read_snapshot(paths: Paths) -> SilverSnapshot:
    """The Silver tables through delta-rs, as the web page reads them (no Spark job: the Silver job refreshes
    this dashboard between its batches)."""
    silver = wt.read_silver(paths)
    figures = wt.headline(silver)
    return SilverSnapshot(
        clients=wt.top_clients(silver, TOP_CLIENTS),
        pays=wt.ordered(silver.pays, [("chiffre_affaires", "descending"), ("pays", "ascending")]),
        segments=wt.ordered(silver.segments, [("segment", "ascending")]),
        ventes_jour=wt.ordered(silver.ventes_jour, [("jour", "ascending")]),
        counts=ClientCounts(figures.clients, figures.loyal, figures.tiers),
    )


def format_dashboard(snap: SilverSnapshot, now: datetime) -> str:
    """The dashboard as text."""
    total_ca = sum((p["chiffre_affaires"] for p in snap.pays), Decimal("0.00"))
    nb_ventes = sum(p["nb_ventes"] for p in snap.pays)
    nb_clients, loyal = snap.counts.clients, snap.counts.loyal
    out = [f"=== Sales lakehouse — Silver at {now:%Y-%m-%d %H:%M:%S} ===",
           f"Sales {nb_ventes:,}   Revenue {euros(total_ca)}   Clients {nb_clients:,}   "
           f"Average basket {euros((total_ca / nb_ventes).quantize(Decimal('0.01')) if nb_ventes else None)}",
           "", f"Top {TOP_CLIENTS} clients by revenue"]
    out += table(["#", "Client", "Country", "Segment", "Purchases", "Revenue", "Tier", "Loyal"],
                 [[str(i), for_terminal(c["client_nom"]), for_terminal(c["pays"]), for_terminal(c["segment"]),
                   f"{c['nb_achats']:,}", euros(c["total_depense"]), c["segment_depense"], "yes" if c["est_client_fidele"] else "no"]
                  for i, c in enumerate(snap.clients[:TOP_CLIENTS], 1)], right={0, 4, 5})
    out += ["", "Revenue by country"]
    out += table(["Country", "Sales", "Revenue", "Share", "Clients"],
                 [[for_terminal(p["pays"]), f"{p['nb_ventes']:,}", euros(p["chiffre_affaires"]),
                   share(p["chiffre_affaires"], total_ca), f"{p['nb_clients']:,}"] for p in snap.pays],
                 right={1, 2, 3, 4})
    out += ["", "B2B vs B2C"]
    out += table(["Segment", "Sales", "Revenue", "Share", "Clients", "Countries"],
                 [[for_terminal(s["segment"]), f"{s['nb_ventes']:,}", euros(s["chiffre_affaires"]),
                   share(s["chiffre_affaires"], total_ca), f"{s['nb_clients']:,}", f"{s['nb_pays']:,}"]
                  for s in snap.segments], right={1, 2, 3, 4, 5})
    tiers = snap.counts.tiers
    out += ["", f"Loyal clients: {loyal:,} of {nb_clients:,} ({share(loyal, nb_clients)})",
            "Clients per spending tier: " + "   ".join(f"{t} {n:,} ({share(n, nb_clients)})"
                                                     for t, n in tiers.items())]
    return "\n".join(out)


def dashboard_text(paths: Paths, now: datetime) -> str:
    """Read Silver and format it; a clear line when Silver does not exist yet."""
    if not all(delta_table_exists(paths.silver(t)) for t in SILVER_TABLES):
        return f"Silver tables not found under {paths.silver_dir}: run streaming_silver.py first."
    return format_dashboard(read_snapshot(paths), now)
