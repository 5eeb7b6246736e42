"""The terminal dashboard of the Silver tables: plain text, amounts in euros, columns aligned.

Revenue is net (gross sales less refunds and what cancellations voided), with the gross, the refunds, the
returns and cancellations and the return rate beside it; then the corrections waiting for their sale (the
orphans among them) and the events Silver refused."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from lakehouse.platform.delta import delta_table_exists
from lakehouse.platform.paths import Paths
from lakehouse.serve import web_tables as wt
from lakehouse.serve.headline import ClientCounts, Headline, headline
from lakehouse.serve.numbers import duration, euros, rate, share
from lakehouse.serve.safe_text import for_terminal
from lakehouse.silver.tables import SILVER_TABLES

TOP_CLIENTS = 10
TOP_PRODUCTS = 10


def table(headers: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    """Rows under headers, each column as wide as its widest cell; columns in ``right`` right-aligned."""
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows)]

    def line(cells: list[str]) -> str:
        return "  ".join(str(c).rjust(w) if i in right else str(c).ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    return [line(headers), line(["-" * w for w in widths]), *[line(r) for r in rows]]


@dataclass
class CorrectionCounts:
    """Returns and cancellations not applied: waiting for their sale (orphans: for longer than the orphan
    timeout), and the events Silver refused, per reason."""

    waiting: int = 0
    orphans: int = 0
    orphan_timeout_s: float = wt.DEFAULT_ORPHAN_TIMEOUT_S
    rejected_by_reason: dict[str, int] = field(default_factory=dict)


@dataclass
class SilverSnapshot:
    """What the dashboard shows, read from the Silver tables: the top clients and products, the counts of
    all."""

    clients: list[dict]
    pays: list[dict]
    segments: list[dict]
    ventes_jour: list[dict]
    counts: ClientCounts
    produits: list[dict] = field(default_factory=list)
    corrections: CorrectionCounts = field(default_factory=CorrectionCounts)


def read_snapshot(paths: Paths, now: datetime | None = None,
                  orphan_timeout_s: float = wt.DEFAULT_ORPHAN_TIMEOUT_S) -> SilverSnapshot:
    """The Silver tables through delta-rs, as the web page reads them (no Spark job: the Silver job refreshes
    this dashboard between its batches); orphans as of ``now`` (naive: this machine's local time; default:
    this moment)."""
    silver = wt.read_silver(paths, rejections=0)
    moment = datetime.now(timezone.utc) if now is None else now.astimezone(timezone.utc)
    figures = wt.headline(silver, moment, orphan_timeout_s)
    return SilverSnapshot(
        clients=wt.top_clients(silver, TOP_CLIENTS),
        pays=wt.ordered(silver.pays, [("chiffre_affaires", "descending"), ("pays", "ascending")]),
        segments=wt.ordered(silver.segments, [("segment", "ascending")]),
        ventes_jour=wt.ordered(silver.ventes_jour, [("jour", "ascending")]),
        counts=ClientCounts(figures.clients, figures.loyal, figures.tiers),
        produits=wt.top_products(silver, TOP_PRODUCTS),
        corrections=CorrectionCounts(figures.waiting, figures.orphans, orphan_timeout_s,
                                     dict(silver.rejets_by_raison)),
    )


def _money_line(figures: Headline) -> str:
    """What the net revenue comes from (gross sales, refunds, cancellations) and the return rate, over every
    country. (The line above keeps its shape, "Sales N   Revenue X   Clients M", which scripts read.)"""
    return (f"Revenue is net: Gross sales {euros(figures.gross)}   Refunds {euros(figures.refunds)}   "
            f"Cancelled {euros(figures.cancelled)}   Returns {figures.returns:,}   "
            f"Cancellations {figures.cancellations:,}   "
            f"Return rate {share(figures.units_returned, figures.units_sold)}")


def _corrections_line(figures: Headline, c: CorrectionCounts) -> str:
    reasons = ", ".join(f"{for_terminal(r or '')} {n:,}" for r, n in
                        sorted(c.rejected_by_reason.items(), key=lambda item: (-item[1], item[0] or "")))
    return (f"Corrections waiting for their sale {figures.waiting:,} (orphans, waiting over "
            f"{duration(c.orphan_timeout_s)}: {figures.orphans:,})   Rejected events {figures.rejected:,}"
            + (f" ({reasons})" if reasons else ""))


def format_dashboard(snap: SilverSnapshot, now: datetime) -> str:
    """The dashboard as text."""
    corrections = snap.corrections
    figures = headline(snap.pays, snap.counts, corrections.waiting, corrections.orphans,
                       sum(corrections.rejected_by_reason.values()))
    total_ca, nb_clients, loyal = figures.revenue, figures.clients, figures.loyal
    out = [f"=== Sales lakehouse — Silver at {now:%Y-%m-%d %H:%M:%S} ===",
           f"Sales {figures.sales:,}   Revenue {euros(total_ca)}   Clients {nb_clients:,}   "
           f"Average basket {euros(figures.average_basket)}",
           _money_line(figures), _corrections_line(figures, corrections),
           "", f"Top {TOP_CLIENTS} clients by net revenue"]
    out += table(["#", "Client", "Country", "Segment", "Purchases", "Revenue", "Refunds", "Tier", "Loyal"],
                 [[str(i), for_terminal(c["client_nom"]), for_terminal(c["pays"]), for_terminal(c["segment"]),
                   f"{c['nb_achats']:,}", euros(c["total_depense"]), euros(c.get("total_rembourse")),
                   c["segment_depense"], "yes" if c["est_client_fidele"] else "no"]
                  for i, c in enumerate(snap.clients[:TOP_CLIENTS], 1)], right={0, 4, 5, 6})
    out += ["", "Net revenue by country"]
    out += table(["Country", "Sales", "Revenue", "Share", "Refunds", "Cancelled", "Return rate", "Clients"],
                 [[for_terminal(p["pays"]), f"{p['nb_ventes']:,}", euros(p["chiffre_affaires"]),
                   share(p["chiffre_affaires"], total_ca), euros(p.get("remboursements")),
                   euros(p.get("montant_annule")), rate(p.get("taux_retour")), f"{p['nb_clients']:,}"]
                  for p in snap.pays], right={1, 2, 3, 4, 5, 6, 7})
    out += ["", "B2B vs B2C"]
    out += table(["Segment", "Sales", "Revenue", "Share", "Refunds", "Cancelled", "Return rate", "Clients",
                  "Countries"],
                 [[for_terminal(s["segment"]), f"{s['nb_ventes']:,}", euros(s["chiffre_affaires"]),
                   share(s["chiffre_affaires"], total_ca), euros(s.get("remboursements")),
                   euros(s.get("montant_annule")), rate(s.get("taux_retour")), f"{s['nb_clients']:,}",
                   f"{s['nb_pays']:,}"] for s in snap.segments], right={1, 2, 3, 4, 5, 6, 7, 8})
    if snap.produits:
        out += ["", f"Top {TOP_PRODUCTS} products by net revenue"]
        out += table(["Product", "Category", "Sales", "Units sold", "Returned", "Return rate", "Revenue", "Refunds"],
                     [[for_terminal(p["produit_nom"] or p["produit_id"]), for_terminal(p["categorie"] or ""),
                       f"{p['nb_ventes']:,}", f"{p['quantite_vendue']:,}", f"{p['quantite_retournee']:,}",
                       rate(p["taux_retour"]), euros(p["chiffre_affaires"]), euros(p["remboursements"])]
                      for p in snap.produits[:TOP_PRODUCTS]], right={2, 3, 4, 5, 6, 7})
    tiers = figures.tiers
    out += ["", f"Loyal clients: {loyal:,} of {nb_clients:,} ({share(loyal, nb_clients)})",
            "Clients per spending tier: " + "   ".join(f"{t} {n:,} ({share(n, nb_clients)})"
                                                     for t, n in tiers.items())]
    return "\n".join(out)


def dashboard_text(paths: Paths, now: datetime, orphan_timeout_s: float = wt.DEFAULT_ORPHAN_TIMEOUT_S) -> str:
    """Read Silver and format it (orphans as of ``now``, naive local time); a clear line when Silver does not
    exist yet."""
    if not all(delta_table_exists(paths.silver(t)) for t in SILVER_TABLES):
        return f"Silver tables not found under {paths.silver_dir}: run streaming_silver.py first."
    return format_dashboard(read_snapshot(paths, now, orphan_timeout_s), now)
