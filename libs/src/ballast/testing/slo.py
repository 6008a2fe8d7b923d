"""SLO burn alerts for tests and benchmarks: one service's SLO burning its budget, published as the slo-engine does
(`evt.slo.<cluster>.<namespace>.<tier>_burn_<state>`), for the services that react to burns (chaos-runner holds,
incident-bot signals)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ballast.bus import Bus
from ballast.events import new_event
from ballast.events.contracts.slo import (
    AlertState,
    BurnAlert,
    BurnTier,
    SloRef,
    WindowBurn,
    burn_event,
    slo_event_type,
    slo_subject,
)


def burn_alert(
    cluster: str = "local",
    namespace: str = "shop",
    name: str = "availability",
    service: str = "checkout",
    *,
    tier: BurnTier = BurnTier.PAGE,
    state: AlertState = AlertState.FIRING,
    since: datetime | None = None,
    budget_remaining: float = 0.8,
) -> BurnAlert:
    """A burn alert of the SLO `namespace/name` of `service`, burning fast (a 5m/1h window pair over 14.4x)."""
    return BurnAlert(
        cluster=cluster,
        slo=SloRef(namespace=namespace, name=name, service=service),
        tier=tier,
        state=state,
        since=since or datetime.now(UTC),
        objective=99.9,
        period=timedelta(days=30),
        windows=(
            WindowBurn(
                short_window=timedelta(minutes=5),
                long_window=timedelta(hours=1),
                factor=14.4,
                short_burn_rate=20,
                long_burn_rate=16,
            ),
        ),
        budget_remaining=budget_remaining,
        time_to_exhaustion=None,
    )


async def publish_burn(bus: Bus, alert: BurnAlert, *, source: str = "test") -> None:
    """Publishes the alert on its tier and state's subject, keyed (de-duplicated) by SLO, tier, state and time."""
    event = burn_event(alert.tier, alert.state)
    slo = alert.slo
    await bus.publisher.publish(
        slo_subject(alert.cluster, slo.namespace, event),
        new_event(
            slo_event_type(event),
            source,
            alert,
            event_id=f"{slo.namespace}/{slo.name}/{slo.service}:{event}:{alert.since.isoformat()}",
        ),
    )
