"""The runners' shared picture of the chaos-runs bucket: what stops or holds a run, and the records' keys. Pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ballast.chaos_runner.state import (
    CONTROL_KEY,
    ChaosState,
    Control,
    FaultRecord,
    FaultState,
    Hold,
    HoldSource,
    RunPhase,
    RunRecord,
    StopRequest,
    Touched,
    hold_key,
    run_id_for,
    run_key,
    stale,
    stop_key,
)
from ballast.chaos_runner.view import ChaosView
from ballast.events.contracts.chaos import AbortReason, ChaosTarget, ExperimentRef, FaultKind
from ballast.events.contracts.slo import BurnTier

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


def record(run_id: str = "r1", **changes: object) -> RunRecord:
    base = RunRecord(
        run_id=run_id,
        experiment=ExperimentRef(namespace="ops", name="kill"),
        owner="runner-a",
        heartbeat_at=NOW,
        started_at=NOW,
        target=ChaosTarget(namespace="shop", webapp="shop"),
        service="shop",
        fault=FaultKind.POD_DELETE,
    )
    return base.model_copy(update=changes)


def hold(source: HoldSource, **fields: object) -> Hold:
    return Hold(
        source=source,
        abort_reason=AbortReason.PAUSED,
        reason="why",
        by="someone",
        at=NOW,
        **fields,
    )


def test_records_round_trip_through_the_buckets_one_value_type() -> None:
    for value in (
        record(),
        StopRequest(reason=AbortReason.STOPPED, detail="d", at=NOW),
        Control(kill_switch=True, reason="r", by="b", at=NOW),
        hold(HoldSource.PAUSE, namespace="shop"),
    ):
        assert ChaosState.model_validate_json(ChaosState(value).model_dump_json()).root == value


def test_the_view_follows_puts_and_deletes() -> None:
    view = ChaosView()
    view.apply(run_key("r1"), 3, ChaosState(record()))
    view.apply(stop_key("r1"), 4, ChaosState(StopRequest(reason=AbortReason.STOPPED, detail="enough", at=NOW)))
    view.apply(CONTROL_KEY, 5, ChaosState(Control(kill_switch=False, reason="lifted", by="b", at=NOW)))
    assert view.runs["r1"][0] == 3
    assert [r.run_id for r in view.running()] == ["r1"]
    assert view.kill_switch is None
    blocked = view.blocked("r1", "shop", "shop", (BurnTier.PAGE,))
    assert blocked is not None
    assert (blocked.reason, blocked.detail) == (AbortReason.STOPPED, "enough")
    view.apply(stop_key("r1"), 6, None)
    view.apply(run_key("r1"), 7, ChaosState(record(phase=RunPhase.FINISHED)))
    assert view.blocked("r1", "shop", "shop", (BurnTier.PAGE,)) is None
    assert view.running() == []


def test_the_kill_switch_blocks_everything() -> None:
    view = ChaosView()
    view.apply(CONTROL_KEY, 1, ChaosState(Control(kill_switch=True, reason="game over", by="oncall", at=NOW)))
    blocked = view.blocked(None, "anywhere", "anything", ())
    assert blocked is not None
    assert blocked.reason is AbortReason.KILL_SWITCH
    assert "oncall" in blocked.detail


def test_a_hold_covers_its_scope_and_a_burn_hold_only_runs_aborting_on_its_tier() -> None:
    view = ChaosView()
    key = hold_key(HoldSource.BURN, "shop", "shop", "slo/ticket")
    view.apply(key, 1, ChaosState(hold(HoldSource.BURN, namespace="shop", service="shop", tier=BurnTier.TICKET)))
    assert view.blocked(None, "shop", "shop", (BurnTier.PAGE,)) is None, "a ticket burn does not stop page-only runs"
    assert view.blocked(None, "shop", "shop", (BurnTier.PAGE, BurnTier.TICKET)) is not None
    assert view.blocked(None, "shop", "cart", (BurnTier.TICKET,)) is None
    view.apply(hold_key(HoldSource.PAUSE, "shop", None), 2, ChaosState(hold(HoldSource.PAUSE, namespace="shop")))
    assert view.blocked(None, "shop", "cart", ()) is not None
    assert view.blocked(None, "other", "cart", ()) is None
    view.apply(hold_key(HoldSource.PAUSE, "shop", None), 3, None)
    view.apply(key, 4, None)
    assert view.blocked(None, "shop", "shop", (BurnTier.TICKET,)) is None


def test_keys_are_valid_and_stable() -> None:
    assert run_id_for("0b6f-uid", "req-1") == run_id_for("0b6f-uid", "req-1")
    assert run_id_for("0b6f-uid", "req-1") != run_id_for("0b6f-uid", "req-2")
    assert hold_key(HoldSource.INCIDENT, "shop", "shop", "INC-1") != hold_key(HoldSource.PAUSE, "shop", "shop")
    assert all(c.isalnum() or c in "-." for c in run_key(run_id_for("uid", "schedule:2026-03-01T10:00:00+00:00")))


def test_a_run_is_stale_once_its_owner_stops_beating_and_open_faults_are_the_unreverted() -> None:
    assert not stale(record(), NOW + timedelta(seconds=9), 10)
    assert stale(record(), NOW + timedelta(seconds=11), 10)
    fault = FaultRecord(
        sequence=1, kind=FaultKind.NODE_CORDON, objects=(Touched(kind="Node", name="n1"),), expires_at=NOW
    )
    with_faults = record().with_fault(fault).with_fault(fault.model_copy(update={"sequence": 2}))
    assert [f.sequence for f in with_faults.open_faults] == [1, 2]
    reverted = with_faults.with_fault(fault.model_copy(update={"state": FaultState.REVERTED}))
    assert [f.sequence for f in reverted.open_faults] == [2]
