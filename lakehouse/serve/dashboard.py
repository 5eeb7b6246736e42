"""The terminal dashboard of the Silver tables: plain text, amounts in euros, columns aligned."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse.platform.delta import delta_table_exists
from lakehouse.platform.paths import Paths
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
class SilverSnapshot:
    """What the dashboard shows, read from the Silver tables."""

    clients: list[dict]
    pays: list[dict]
    segments: list[dict]
    ventes_jour: list[dict]


def read_snapshot(spark: SparkSession, paths: Paths) -> SilverSnapshot:
    """Collect the (small) Silver tables."""
    def rows(table: str, order: list) -> list[dict]:
        df = spark.read.format("delta").load(str(paths.silver(table)))
        return [r.asDict() for r in df.orderBy(*order).collect()]
    return SilverSnapshot(
        clients=rows("clients", [F.desc("total_depense"), "client_id"]),
        pays=rows("pays", [F.desc("chiffre_affaires"), "pays"]),
        segments=rows("segments", ["segment"]),
        ventes_jour=rows("ventes_jour", ["jour"]),
    )


def format_dashboard(snap: SilverSnapshot, now: datetime) -> str:
    """The dashboard as text."""
    total_ca = sum((p["chiffre_affaires"] for p in snap.pays), Decimal("0.00"))
    nb_ventes = sum(p["nb_ventes"] for p in snap.pays)
    nb_clients = len(snap.clients)
    loyal = sum(1 for c in snap.clients if c["est_client_fidele"])
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
    tiers = {t: sum(1 for c in snap.clients if c["segment_depense"] == t) for t in TIERS}
    out += ["", f"Loyal clients: {loyal:,} of {nb_clients:,} ({share(loyal, nb_clients)})",
            "Clients per spending tier: " + "   ".join(f"{t} {n:,} ({share(n, nb_clients)})"
                                                     for t, n in tiers.items())]
    return "\n".join(out)


def dashboard_text(spark: SparkSession, paths: Paths, now: datetime) -> str:
    """Read Silver and format it; a clear line when Silver does not exist yet."""
    if not all(delta_table_exists(paths.silver(t)) for t in SILVER_TABLES):
        return f"Silver tables not found under {paths.silver_dir}: run streaming_silver.py first."
    return format_dashboard(read_snapshot(spark, paths), now)
