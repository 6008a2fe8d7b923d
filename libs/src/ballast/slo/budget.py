"""Error-budget arithmetic (SRE Workbook ch. 5 and notes/slo.md §5), on plain numbers so every caller shares it.

Notation: B = 1 - target (the allowed error ratio), E(w) = bad/total over a window w, P = the SLO period.
Remaining budget may go negative once overspent; only displays should clamp it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta


def require_budget(error_budget: float) -> None:
    if not 0 < error_budget <= 1:
        raise ValueError(f"error budget {error_budget} must be in (0, 1]: a 100% objective has no budget to burn")


def burn_rate(error_ratio: float, error_budget: float) -> float:
    """How many times faster than sustainable the budget burns: E(w) / B (1.0 spends it exactly over the period)."""
    require_budget(error_budget)
    return error_ratio / error_budget


def burn_rates(error_ratios: Mapping[timedelta, float], error_budget: float) -> dict[timedelta, float]:
    """`burn_rate` of each window's error ratio, the budget checked once."""
    require_budget(error_budget)
    return {window: ratio / error_budget for window, ratio in error_ratios.items()}


def budget_remaining(period_error_ratio: float, error_budget: float) -> float:
    """The share of the period's budget left: 1 - E(P) / B."""
    return 1 - burn_rate(period_error_ratio, error_budget)


def budget_remaining_from_counts(bad: float, total: float, error_budget: float) -> float:
    """The same from event counts, 1 - bad / (total * B); with no events nothing is spent."""
    require_budget(error_budget)
    if total <= 0:
        return 1.0
    return 1 - bad / (total * error_budget)


def budget_spent(burn: float, window: timedelta, period: timedelta) -> float:
    """The share of the period's budget a burn over a window spends: burn x w / P (14.4 over 1h of 30d = 2%)."""
    return burn * (window / period)


def burn_factor(budget_share: float, window: timedelta, period: timedelta) -> float:
    """The burn rate that spends `budget_share` of the budget within `window`: the inverse of `budget_spent`."""
    return budget_share * (period / window)


def time_to_exhaustion(remaining: float, burn: float, period: timedelta) -> timedelta | None:
    """How long the budget left lasts at this burn, R x P / burn; None when nothing burns or nothing is left."""
    if burn <= 0 or remaining <= 0:
        return None
    return period * (remaining / burn)


def detection_time(error_ratio: float, error_budget: float, window: timedelta, factor: float) -> timedelta | None:
    """How long a constant error ratio takes to push a window's ratio over factor x B: B / E x w x factor.

    None when the error ratio never gets there (it is below the threshold).
    """
    require_budget(error_budget)
    if error_ratio <= factor * error_budget:
        return None
    return window * (error_budget / error_ratio * factor)
