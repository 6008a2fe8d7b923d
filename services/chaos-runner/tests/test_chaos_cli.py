"""`ballast chaos`: the commands the arguments make, and `list`'s rendering of the bucket. The bus round trip is in
test_chaos_runner_service (the kill switch test drives `ballast chaos stop --all`, `list` and `pause --resume`)."""

from __future__ import annotations

import argparse

import pytest

from ballast.cli import chaos
from ballast.events.contracts.chaos import ChaosCommand, ExperimentRef, PauseChaos, RunExperiment, StopExperiments


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    chaos.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["chaos", "--by", "alice", "--request-id", "req-1", *argv])


def test_run_stop_and_pause_make_their_commands() -> None:
    command, payload = chaos.command_for(parse("run", "shop/kill", "--dry-run"))
    assert command is ChaosCommand.RUN
    assert payload == RunExperiment(
        request_id="req-1", requested_by="alice", experiment=ExperimentRef(namespace="shop", name="kill"), dry_run=True
    )
    command, payload = chaos.command_for(parse("stop", "--all", "--reason", "game day over"))
    assert command is ChaosCommand.STOP
    assert payload == StopExperiments(request_id="req-1", requested_by="alice", experiment=None, reason="game day over")
    command, payload = chaos.command_for(parse("pause", "--service", "shop"))
    assert isinstance(payload, PauseChaos)
    assert (payload.service, payload.namespace, payload.paused) == ("shop", None, True)
    _, payload = chaos.command_for(parse("pause", "--resume"))
    assert isinstance(payload, PauseChaos)
    assert not payload.paused


@pytest.mark.parametrize("argv", [("run", "kill"), ("run", "/kill"), ("stop",), ("stop", "a/b", "--all")])
def test_bad_arguments_are_refused(argv: tuple[str, ...]) -> None:
    with pytest.raises(SystemExit):
        parse(*argv)


def test_list_shows_the_kill_switch_holds_and_runs() -> None:
    records = {
        "control": {"kind": "control", "kill_switch": True, "reason": "game over", "by": "oncall", "at": "t"},
        "hold.1": {
            "kind": "hold",
            "source": "incident",
            "namespace": "shop",
            "service": "shop",
            "tier": None,
            "reason": "incident INC-7 is open",
            "at": "t",
        },
        "run.a": {
            "run_id": "a",
            "experiment": {"namespace": "shop", "name": "kill"},
            "fault": "pod_delete",
            "phase": "running",
            "started_at": "2",
            "owner": "runner-1",
            "faults": [{"state": "applied"}],
            "outcome": None,
        },
        "run.b": {
            "run_id": "b",
            "experiment": {"namespace": "shop", "name": "scale"},
            "fault": "scale_down",
            "phase": "finished",
            "started_at": "1",
            "owner": "runner-2",
            "faults": [],
            "outcome": "kill_switch",
        },
    }
    lines = chaos.render(records)
    assert lines[0] == "KILL SWITCH ENGAGED by oncall at t: game over"
    assert lines[1] == "held shop/shop [incident]: incident INC-7 is open"
    assert lines[3].split()[:6] == ["a", "shop/kill", "pod_delete", "running", "1", "fault(s)"]
    assert lines[4].split()[:5] == ["b", "shop/scale", "scale_down", "finished", "kill_switch"]
    assert chaos.render({})[0] == "kill switch: off"
