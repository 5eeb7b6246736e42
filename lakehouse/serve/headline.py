"""The headline figures every reader shows at its top: the terminal dashboard, the report and the web page.

Computed once, here, from the rows each reader already holds: the countries table (``pays``: one row per
country) for the sales and the money, the clients table for the clients, loyalty and spending tiers. The
money is Silver's own: revenue is net (gross sales less refunds and what cancellations voided); nothing
here computes it another way, it only adds up the countries. A missing or null cell counts as zero."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from lakehouse.silver.tables import TIERS

CENTS = Decimal("0.00")

Row = Mapping[str, Any]


def _values(rows: Iterable[Row], column: str) -> Iterator[Any]:
    """``column``'s values in ``rows``: a row without the column, or with a null in it, gives none."""
    return (v for v in (r.get(column) for r in rows) if v is not None)


def money_total(rows: Iterable[Row], column: str) -> Decimal:
    """The exact sum of an amount column, in euros and cents."""
    return sum(_values(rows, column), CENTS)


def count_total(rows: Iterable[Row], column: str) -> int:
    """The exact sum of a count column (in Python: Arrow's integer sum wraps around on overflow)."""
    return sum(_values(rows, column), 0)


@dataclass(frozen=True)
class ClientCounts:
    """Counts over the whole clients table: clients, loyal ones, and clients per spending tier."""

    clients: int
    loyal: int
    tiers: dict[str, int]

    @classmethod
    def of(cls, clients: Iterable[Row]) -> ClientCounts:
        """From clients rows (at least ``est_client_fidele`` and ``segment_depense``); a null flag is not
        loyal, a null or unknown tier is in none."""
        n, loyal, tiers = 0, 0, dict.fromkeys(TIERS, 0)
        for c in clients:
            n += 1
            loyal += bool(c["est_client_fidele"])
            if c["segment_depense"] in tiers:
                tiers[c["segment_depense"]] += 1
        return cls(n, loyal, tiers)


@dataclass(frozen=True)
class Headline:
    """Silver's totals: sales and money as the countries table counts them (revenue is net), clients from
    the clients table, corrections from theirs."""

    sales: int
    revenue: Decimal
    clients: int
    loyal: int
    tiers: dict[str, int]
    gross: Decimal = CENTS
    refunds: Decimal = CENTS
    cancelled: Decimal = CENTS
    returns: int = 0
    cancellations: int = 0
    units_sold: int = 0
    units_returned: int = 0
    waiting: int = 0
    orphans: int = 0
    rejected: int = 0

    @property
    def purchases(self) -> int:
        """Sales not cancelled."""
        return self.sales - self.cancellations

    @property
    def average_basket(self) -> Decimal | None:
        """Net revenue per sale not cancelled, to the cent; None when every sale was cancelled (or none made)."""
        return (self.revenue / self.purchases).quantize(Decimal("0.01")) if self.purchases > 0 else None

    @property
    def return_rate(self) -> float | None:
        """Units returned per unit sold (as Silver's ``taux_retour``); None before a unit is sold."""
        return self.units_returned / self.units_sold if self.units_sold else None


def headline(pays: Iterable[Row], clients: ClientCounts, waiting: int = 0, orphans: int = 0,
             rejected: int = 0) -> Headline:
    """The headline from the countries rows (``pays``), the clients' counts, and the corrections waiting for
    their sale, the orphans among them and the events Silver refused."""
    pays = list(pays)
    return Headline(sales=count_total(pays, "nb_ventes"), revenue=money_total(pays, "chiffre_affaires"),
                    clients=clients.clients, loyal=clients.loyal, tiers=dict(clients.tiers),
                    gross=money_total(pays, "chiffre_affaires_brut"), refunds=money_total(pays, "remboursements"),
                    cancelled=money_total(pays, "montant_annule"), returns=count_total(pays, "nb_retours"),
                    cancellations=count_total(pays, "nb_annulations"),
                    units_sold=count_total(pays, "quantite_vendue"),
                    units_returned=count_total(pays, "quantite_retournee"),
                    waiting=waiting, orphans=orphans, rejected=rejected)
