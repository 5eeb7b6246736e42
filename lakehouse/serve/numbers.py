"""How amounts and shares read on every screen (terminal dashboard, report, web page)."""

from __future__ import annotations

from decimal import Decimal


def euros(amount: Decimal | None) -> str:
    """``Decimal("1234.5")`` → ``"1,234.50 €"``."""
    return "—" if amount is None else f"{amount:,.2f} €"


def share(part: int | Decimal, whole: int | Decimal) -> str:
    return "—" if not whole else f"{100 * part / whole:.1f} %"
