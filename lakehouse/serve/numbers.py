"""How amounts, shares, rates and waiting times read on every screen (terminal dashboard, report, menu, web
page)."""

from __future__ import annotations

from decimal import Decimal


def euros(amount: Decimal | None) -> str:
    """``Decimal("1234.5")`` → ``"1,234.50 €"``."""
    return "—" if amount is None else f"{amount:,.2f} €"


def share(part: int | Decimal, whole: int | Decimal) -> str:
    return "—" if not whole else f"{100 * part / whole:.1f} %"


def rate(value: float | None) -> str:
    """A ratio Silver computed (``taux_retour``: units returned per unit sold) as a percentage; ``—`` when
    there is none (nothing sold)."""
    return "—" if value is None else f"{100 * value:.1f} %"


def duration(seconds: float | None) -> str:
    """A waiting time in its two largest units: ``45 s``, ``12 min 5 s``, ``3 h 12 min``, ``2 d 3 h``, ``1 h``."""
    if seconds is None:
        return "—"
    s = max(int(seconds), 0)
    parts = [(s // 86400, "d"), (s % 86400 // 3600, "h"), (s % 3600 // 60, "min"), (s % 60, "s")]
    first = next((i for i, (n, _) in enumerate(parts) if n), len(parts) - 1)
    return " ".join(f"{n} {unit}" for n, unit in parts[first:first + 2] if n or unit == parts[first][1])
