"""The postmortem written from INC-7's recorded events (a rollout, chaos, a degraded WebApp, a page burn, the
incident's lifecycle, a hotfix override, and events of other namespaces, incidents and times mixed in): its content,
its timeline's order, the budget figure, and the same bytes whenever it is written again from the same events."""

from __future__ import annotations

import json
import random
from datetime import timedelta
from pathlib import Path
from typing import Any

from slack_fixtures import T0, recorded_events, recorded_incident

from ballast.events.contracts.incident import (
    IncidentEvent,
    IncidentRole,
    IncidentStatus,
    IncidentUpdated,
    incident_event_type,
)
from ballast.events.envelope import new_event
from ballast.incident_bot.postmortem import (
    ActionType,
    EntryKind,
    Postmortem,
    render_json,
    render_markdown,
    write_postmortem,
)

GOLDEN = Path(__file__).parent / "data" / "inc-7-postmortem.md"
MINUTE = timedelta(minutes=1)


def postmortem() -> Postmortem:
    return write_postmortem(recorded_incident(), [event for _, event in recorded_events()])


def test_markdown_is_the_golden_document() -> None:
    assert render_markdown(postmortem()).content.decode() == GOLDEN.read_text()


def test_sections_in_order() -> None:
    text = render_markdown(postmortem()).content.decode()
    headings = [line for line in text.splitlines() if line.startswith("#")]
    assert headings == [
        "# Postmortem: INC-7 — Checkout failing for most customers",
        "## Summary",
        "## Impact",
        "## Detection",
        "## Resolution",
        "## Timeline (UTC)",
        "## Action items",
        "## Lessons learned",
    ]


def test_impact_takes_the_budget_consumed_from_the_slo_engines_figures() -> None:
    impact = postmortem().impact
    (budget,) = impact.budgets  # the other namespace's burning SLO is not this incident's
    assert budget.slo == "shop/checkout-availability"
    assert (budget.budget_before, budget.budget_after) == (0.82, 0.61)
    assert budget.consumed == 0.21  # exactly: 0.82 - 0.61 in binary floats would be 0.20999999999999996
    assert budget.peak_burn_rate == 15.2
    assert impact.started_at == T0 - 5 * MINUTE  # the WebApp degraded before the burn fired
    assert impact.ended_at == T0 + 25 * MINUTE  # mitigated
    assert impact.duration == 30 * MINUTE
    assert impact.affected_webapps == ("shop/checkout",)
    assert "| shop/checkout-availability | checkout | 99.9% | 30 d | 82% | 61% | 21% | 15.2x |" in (
        render_markdown(postmortem()).content.decode()
    )


def test_detection_and_resolution_times() -> None:
    pm = postmortem()
    assert pm.detection.first_signal_at == T0 - 5 * MINUTE
    assert pm.detection.time_to_detect == 5 * MINUTE
    assert pm.detection.time_to_acknowledge == 4 * MINUTE
    assert pm.detection.alertmanager_group_keys == ('{}/{severity="page"}:{alertname="CheckoutErrors"}',)
    assert pm.resolution.time_to_mitigate == 30 * MINUTE
    assert pm.resolution.time_to_resolve == 45 * MINUTE
    assert pm.resolution.resolved_by == "slack:U0ALICE"
    assert pm.status is IncidentStatus.RESOLVED


def test_timeline_is_one_merged_list_in_time_order_of_this_incidents_events_only() -> None:
    timeline = postmortem().timeline
    assert [entry.at for entry in timeline] == sorted(entry.at for entry in timeline)
    assert [(entry.at - T0, entry.kind) for entry in timeline] == [
        (-90 * MINUTE, EntryKind.DEPLOY),  # told by two reconciles, one line
        (-10 * MINUTE, EntryKind.CHAOS),
        (-9 * MINUTE, EntryKind.CHAOS),  # the passing steady-state check is no line
        (-5 * MINUTE, EntryKind.RECONCILE),
        (-3 * MINUTE, EntryKind.SLO),
        (-2 * MINUTE, EntryKind.CHAOS),
        (0 * MINUTE, EntryKind.INCIDENT),
        (2 * MINUTE, EntryKind.INCIDENT),
        (4 * MINUTE, EntryKind.INCIDENT),
        (20 * MINUTE, EntryKind.POLICY),  # the hotfix override; the plain allow before it is no news
        (21 * MINUTE, EntryKind.DEPLOY),
        (25 * MINUTE, EntryKind.INCIDENT),
        (30 * MINUTE, EntryKind.SLO),
        (40 * MINUTE, EntryKind.INCIDENT),
    ]
    texts = "\n".join(entry.text for entry in timeline)
    assert "payments" not in texts  # another namespace
    assert "INC-8" not in texts
    assert "Cart slow" not in texts
    assert "generation 3" not in texts  # before the window
    assert "drift repaired" not in texts  # after the incident was resolved
    assert 'Alertmanager group {}/{severity="page"}:{alertname="CheckoutErrors"}' in timeline[6].text
    assert "hotfix override" in timeline[9].text
    assert "roll checkout back to 1.4.2" in timeline[9].text


def test_action_items_are_typed_and_left_to_fill() -> None:
    items = postmortem().action_items
    assert {item.type for item in items} == set(ActionType)
    assert all(item.owner == "" and not item.done for item in items)
    assert any("hotfix override" in item.item for item in items)
    assert any("run-31" in item.item for item in items)


def test_regenerating_from_the_same_events_gives_the_same_bytes_whatever_their_order_and_repeats() -> None:
    events = [event for _, event in recorded_events()]
    first_md, first_json = render_markdown(postmortem()), render_json(postmortem())
    shuffled = events + events[:5]  # a redelivered or re-imported event is the same event
    random.Random(7).shuffle(shuffled)
    again = write_postmortem(recorded_incident(), shuffled)
    assert render_markdown(again).content == first_md.content
    assert render_json(again).content == first_json.content
    assert first_md.digest.startswith("sha256:")
    assert len(first_md.digest) == 7 + 64
    assert render_markdown(again).digest == first_md.digest


def test_json_is_the_same_postmortem_as_the_markdown() -> None:
    pm = postmortem()
    document = json.loads(render_json(pm).content)
    assert Postmortem.model_validate_json(render_json(pm).content) == pm
    assert document["impact"]["budgets"][0]["consumed"] == 0.21
    assert document["impact"]["duration"] == "PT30M"
    assert [entry["kind"] for entry in document["timeline"]][:2] == ["deploy", "chaos"]


def test_an_ongoing_incident_has_no_end_and_reads_events_until_now() -> None:
    opened = recorded_incident().model_copy(
        update={
            "status": IncidentStatus.ACKNOWLEDGED,
            "mitigated_at": None,
            "resolved_at": None,
        }
    )
    pm = write_postmortem(opened, [event for _, event in recorded_events()])
    assert pm.window_end is None
    assert pm.impact.duration is None
    assert "ongoing" in render_markdown(pm).content.decode()
    assert any("drift repaired" in entry.text for entry in pm.timeline)  # after the (not yet) resolution


def test_the_people_in_each_role_head_the_document() -> None:
    staffed = recorded_incident().model_copy(
        update={"roles": {IncidentRole.SCRIBE: "slack:U0CARL", IncidentRole.COMMUNICATIONS: "dana"}}
    )
    pm = write_postmortem(staffed, [event for _, event in recorded_events()])
    rows = [line for line in render_markdown(pm).content.decode().splitlines() if line.startswith("| ")]
    commander = next(i for i, row in enumerate(rows) if row.startswith("| Commander |"))
    assert rows[commander + 1 : commander + 3] == ["| Communications | dana |", "| Scribe | slack:U0CARL |"]
    assert json.loads(render_json(pm).content)["roles"] == {"scribe": "slack:U0CARL", "communications": "dana"}


def test_severity_and_role_changes_are_lines_of_the_timeline_saying_what_changed() -> None:
    incident = recorded_incident()  # critical, commanded by slack:U0ALICE from its acknowledgement at 09:04

    def update(minutes: int, by: str, **changed: object) -> Any:
        data = IncidentUpdated(
            cluster=incident.cluster,
            incident_id=incident.incident_id,
            service=incident.service,
            namespace=incident.namespace,
            severity=incident.severity,
            commander=incident.commander,
            changed_by=by,
            at=T0 + minutes * MINUTE,
        ).model_copy(update=changed)
        event_id = f"{incident.incident_id}:updated:{data.at.isoformat()}"
        source = f"/clusters/{incident.cluster}/incident-bot"
        return new_event(incident_event_type(IncidentEvent.UPDATED), source, data, event_id=event_id)

    scribe = {IncidentRole.SCRIBE: "slack:U0CARL"}
    updates = [
        update(6, "slack:U0BOB", roles=scribe),
        update(7, "slack:U0ALICE", commander="slack:U0BOB", roles=scribe),
        update(8, "slack:U0BOB", commander="slack:U0BOB", roles=scribe),  # told again: no news
    ]
    pm = write_postmortem(incident, [*(event for _, event in recorded_events()), *updates])
    lines = [(entry.at, entry.text) for entry in pm.timeline if entry.text.startswith("incident updated")]
    assert lines == [
        (T0 + 6 * MINUTE, "incident updated by slack:U0BOB: scribe slack:U0CARL"),
        (T0 + 7 * MINUTE, "incident updated by slack:U0ALICE: commander slack:U0BOB"),
    ]
