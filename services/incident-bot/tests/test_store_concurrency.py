"""Signals at once: an alert storm over many Alertmanager groups, sent to two replicas of the store at the same time
and repeated, still opens one incident per group (a real nats-server, one bucket); and the per-key locks let signals
that share a key take turns while the others go on."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from datetime import UTC, datetime

from incident_fixtures import running_store

from ballast.bus import Bus
from ballast.events.catalogue import INCIDENTS
from ballast.incident_bot.alertmanager import AmWebhook, alert_signals
from ballast.incident_bot.changes import Outcome
from ballast.incident_bot.records import (
    COUNTER_KEY,
    IncidentCounter,
    StoredIncident,
    incident_key,
    incident_number,
)
from ballast.incident_bot.store import KeyLocks
from ballast.testing import eventually

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def group_webhook(service: str, alerts: int) -> AmWebhook:
    """Alertmanager's notification of one group (alertname and service) of `alerts` firing alerts."""
    labels = {"alertname": "HighErrorRate", "service": service}
    return AmWebhook.model_validate(
        {
            "version": "4",
            "groupKey": f'{{}}:{{alertname="HighErrorRate", service="{service}"}}',
            "status": "firing",
            "receiver": "incident-bot",
            "groupLabels": labels,
            "alerts": [
                {
                    "status": "firing",
                    "labels": {**labels, "namespace": "shop", "instance": f"{service}-{n}", "severity": "critical"},
                    "startsAt": "2026-12-01T11:59:00Z",
                    "fingerprint": hashlib.sha256(f"{service}/{n}".encode()).hexdigest()[:16],
                }
                for n in range(alerts)
            ],
        }
    )


async def test_an_alert_storm_sent_to_two_replicas_at_once_opens_one_incident_per_group(
    bus: Bus, unique: Callable[[str], str]
) -> None:
    cluster = unique("c")
    services = [unique(f"svc{n}") for n in range(10)]
    async with running_store(bus, cluster) as one, running_store(bus, cluster) as two:
        # every group's notification to both replicas at once, and again (Alertmanager re-sends a group)
        sends = [(service, store) for service in services for store in (one.store, two.store) for _ in range(2)]
        results = await asyncio.gather(
            *(store.handle_all(alert_signals(group_webhook(service, 4), T0)) for service, store in sends)
        )

        incidents: dict[str, set[str | None]] = {service: set() for service in services}
        opened: dict[str, int] = dict.fromkeys(services, 0)
        for (service, _), result in zip(sends, results, strict=True):
            assert len(result) == 4
            incidents[service] |= {incident_id for _, incident_id in result}
            opened[service] += sum(1 for outcome, _ in result if outcome is Outcome.OPENED)
        assert all(len(ids) == 1 and None not in ids for ids in incidents.values()), incidents
        assert opened == dict.fromkeys(services, 1)
        ids = [next(iter(ids)) for ids in incidents.values()]
        assert len(set(ids)) == len(services)
        numbers = [incident_number(i or "") for i in ids]
        assert None not in numbers
        assert len(set(numbers)) == len(numbers)

        # each incident holds every alert of its group and the claims that find it by any of them
        for service, incident_id in zip(services, ids, strict=True):
            assert incident_id is not None
            webhook = group_webhook(service, 4)
            assert (await one.store.get(incident_id)).service == service

            def holds_all(incident_id: str = incident_id, webhook: AmWebhook = webhook) -> bool:
                stored = one.store.view().get(incident_id)
                fingerprints = {f"am:{alert.fingerprint}" for alert in webhook.alerts}
                return stored is not None and set(stored.alerts) == fingerprints and len(stored.claims) == 6

            await eventually(holds_all, what=f"{incident_id} holding its group's four alerts and six claims")
        # a later repeat, on either replica, is a duplicate of the same incident
        for store in (one.store, two.store):
            again = await store.handle_all(alert_signals(group_webhook(services[0], 4), T0))
            assert again == [(Outcome.DUPLICATE, ids[0])] * 4


async def test_a_groups_alerts_join_their_incident_in_one_change_and_repeats_change_nothing(
    bus: Bus, unique: Callable[[str], str]
) -> None:
    service = unique("checkout")
    webhook = group_webhook(service, 5)
    async with running_store(bus, unique("c")) as running:
        first = await running.store.handle_all(alert_signals(webhook, T0))
        assert [outcome for outcome, _ in first] == [Outcome.OPENED] + [Outcome.JOINED] * 4
        incident_id = first[0][1]
        assert incident_id is not None
        assert {i for _, i in first} == {incident_id}
        records = await bus.kv(INCIDENTS, StoredIncident)
        history = await records.history(incident_key(incident_id))
        # opened with the four alerts that joined it, then cleared of the events it published (with their claims)
        assert len(history) == 2
        last = history[-1].value
        assert last is not None
        assert set(last.alerts) == {f"am:{alert.fingerprint}" for alert in webhook.alerts}
        assert len(last.claims) == 7  # five fingerprints, the group and the service

        again = await running.store.handle_all(alert_signals(webhook, T0))
        assert again == [(Outcome.DUPLICATE, incident_id)] * 5
        assert len(await records.history(incident_key(incident_id))) == 2


async def test_an_alert_of_another_incident_stays_there_when_its_new_group_opens_one(
    bus: Bus, unique: Callable[[str], str]
) -> None:
    """A group's alerts join the incident their first one opens, in its opening change, except one another incident
    already holds (an alert Alertmanager now groups elsewhere): that one stays with its incident."""
    first_service, second_service = unique("cart"), unique("pay")
    async with running_store(bus, unique("c")) as running:
        first = await running.store.handle_all(alert_signals(group_webhook(first_service, 1), T0))
        [(outcome, held_by)] = first
        assert outcome is Outcome.OPENED
        moved = group_webhook(first_service, 1).alerts[0]
        regrouped = group_webhook(second_service, 2)
        webhook = regrouped.model_copy(update={"alerts": [*regrouped.alerts, moved]})

        results = await running.store.handle_all(alert_signals(webhook, T0))

        (opened, new_id), (joined, second_id), (stays, moved_to) = results
        assert (opened, joined) == (Outcome.OPENED, Outcome.JOINED)
        assert second_id == new_id != held_by
        assert (stays, moved_to) == (Outcome.DUPLICATE, held_by)
        assert new_id is not None
        record = running.store.view()[new_id]
        assert set(record.alerts) == {f"am:{alert.fingerprint}" for alert in regrouped.alerts}
        assert f"fp:am:{moved.fingerprint}" not in record.claims


async def test_incidents_opened_at_once_are_numbered_in_a_row_and_the_counter_follows(
    bus: Bus, unique: Callable[[str], str]
) -> None:
    """Openings that wait for the counter meanwhile are numbered together: no number twice, none skipped."""
    services = [unique(f"storm{n}") for n in range(30)]
    async with running_store(bus, unique("c")) as running:
        results = await asyncio.gather(
            *(running.store.handle_all(alert_signals(group_webhook(service, 2), T0)) for service in services)
        )
        numbers = sorted(incident_number(result[0][1] or "") or 0 for result in results)
        assert numbers == list(range(numbers[0], numbers[0] + len(services)))
        counter = await (await bus.kv(INCIDENTS, IncidentCounter)).get(COUNTER_KEY)
        assert counter is not None
        assert counter.value is not None
        assert counter.value.last == numbers[-1]


async def test_signals_sharing_a_key_take_turns_and_the_others_go_on() -> None:
    locks = KeyLocks()
    entered: list[str] = []
    release = asyncio.Event()

    async def hold(name: str, keys: list[str], until: asyncio.Event | None = None) -> None:
        async with locks.holding(keys):
            entered.append(name)
            if until is not None:
                await until.wait()

    first = asyncio.create_task(hold("first", ["fp:a", "group:g"], release))
    await eventually(lambda: entered == ["first"], what="the first signal in")
    same_group = asyncio.create_task(hold("same group", ["fp:b", "group:g"]))
    elsewhere = asyncio.create_task(hold("elsewhere", ["fp:c", "group:h", "svc:shop/other"]))
    await asyncio.wait_for(elsewhere, 5)
    assert entered == ["first", "elsewhere"]  # the signal of the same group waits, the other went on
    release.set()
    await asyncio.wait_for(asyncio.gather(first, same_group), 5)
    assert entered == ["first", "elsewhere", "same group"]
    assert len(locks) == 0  # nobody holds or waits: no lock is kept
