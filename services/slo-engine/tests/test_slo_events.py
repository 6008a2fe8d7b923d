"""What a burn or budget transition says as a Kubernetes Event on its SLO (the live test sees them written)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ballast.events.contracts.slo import AlertState, BudgetExhausted, BudgetRecovered, BurnTier, SloRef, WindowBurn
from ballast.slo_engine.slo_events import describe
from ballast.testing.slo import burn_alert

REF = SloRef(namespace="shop", name="availability", service="checkout")
AT = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def test_a_firing_tier_names_the_windows_that_made_it_fire_and_what_is_left() -> None:
    quiet_quick = WindowBurn(
        short_window=timedelta(minutes=5), long_window=timedelta(hours=1), factor=14.4, short_burn_rate=3.0,
        long_burn_rate=20.0,
    )  # fmt: skip
    slow = WindowBurn(
        short_window=timedelta(minutes=30), long_window=timedelta(hours=6), factor=6, short_burn_rate=7.5,
        long_burn_rate=6.25,
    )  # fmt: skip
    alert = burn_alert(budget_remaining=0.4321).model_copy(
        update={"windows": (quiet_quick, slow), "time_to_exhaustion": timedelta(hours=2, minutes=5, seconds=9.7)}
    )
    kind, reason, note = describe(alert) or ("", "", "")
    assert (kind, reason) == ("Warning", "PageBurnFiring")
    assert note == (
        "page burn firing: 6.2x over 6h and 7.5x over 30m (fires above 6x); 43.21% of the error budget left, "
        "spent in 2h5m9s at this rate"
    )


def test_a_resolved_tier_is_a_normal_event() -> None:
    alert = burn_alert(tier=BurnTier.TICKET, state=AlertState.RESOLVED, budget_remaining=0.9)
    assert describe(alert) == ("Normal", "TicketBurnResolved", "ticket burn resolved; 90.00% of the error budget left")


def test_budget_transitions_say_whether_deploys_freeze() -> None:
    common = {"cluster": "local", "slo": REF, "objective": 99.9, "period": timedelta(days=30), "at": AT}
    exhausted = BudgetExhausted(**common, budget_remaining=0.05, threshold=0.1, freeze_deploys=True)
    assert describe(exhausted) == (
        "Warning",
        "BudgetExhausted",
        "5.00% of the error budget left (exhausted at 10%); non-hotfix deploys of the service are frozen",
    )
    recovered = BudgetRecovered(**common, budget_remaining=0.25, threshold=0.1, freeze_deploys=False)
    assert describe(recovered) == ("Normal", "BudgetRecovered", "25.00% of the error budget left (above 10%)")
