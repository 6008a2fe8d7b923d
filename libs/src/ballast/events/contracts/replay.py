"""The replay tooling's own record, on `evt.replay.<cluster>._.<started|finished|stopped|failed>`.

Every `ballast events` run that puts events on the bus again (`import`, `replay`, `dlq redrive`, with `--execute`)
says when it starts and how it ends, in the same log as the events it publishes: what was published again, from
where, into which subjects (the live ones, which the services consume, or a shadow stream), by whom and how far it
got. Dry runs publish nothing, this record included.

Event id: `replay:<run>:<invocation>:<state>`, the invocation a token of its own per command run (resuming a replay
under the same run id is another invocation).
"""

from __future__ import annotations

import enum

from pydantic import AwareDatetime, Field

from ballast.events.contracts.common import Payload, platform_event, platform_event_type, platform_subject
from ballast.events.registry import EventSpec

AREA = "replay"


class ReplayState(enum.StrEnum):
    STARTED = "started"
    FINISHED = "finished"
    STOPPED = "stopped"  # Ctrl-C: `resume` says how to go on
    FAILED = "failed"  # `error` says why; `resume` says how to go on


class ReplayOperation(enum.StrEnum):
    IMPORT = "import"  # an export file published back to its recorded subjects
    REPLAY = "replay"  # recorded events published again, into the live subjects or a shadow stream
    REDRIVE = "redrive"  # dead letters published again on their original subjects


class ReplayRun(Payload):
    """One `ballast events` run that publishes, as it starts or as it ended."""

    run: str = Field(min_length=1, description="the run id (a replay's --run; import and redrive get one each)")
    operation: ReplayOperation = Field(description="import, replay or redrive")
    source: str = Field(min_length=1, description="what is published again: a file, a stream selection, letters")
    target: str = Field(min_length=1, description="where it goes: the live subjects or a shadow stream")
    live: bool = Field(description="whether the services consume what is published (not a shadow stream)")
    actor: str = Field(min_length=1, description="who ran it: user@host of the command")
    planned: int | None = Field(default=None, ge=0, description="events it set out to publish, when known")
    stored: int = Field(default=0, ge=0, description="events stored so far (at the end: in all)")
    duplicates: int = Field(default=0, ge=0, description="events the stream had already (the same message id)")
    resume: str | None = Field(default=None, description="how to go on after a stop or a failure, e.g. --from-line 9")
    error: str | None = Field(default=None, description="why it failed")
    started_at: AwareDatetime = Field(description="when the run began")
    ended_at: AwareDatetime | None = Field(default=None, description="None while it runs")


def replay_event_type(state: ReplayState) -> str:
    return platform_event_type(AREA, state)


def replay_subject(cluster: str, state: ReplayState) -> str:
    return platform_subject(AREA, cluster, None, state)


REPLAY_EVENT_TYPES: tuple[EventSpec, ...] = (
    platform_event(AREA, ReplayState.STARTED, ReplayRun, "A run of the replay tooling began publishing."),
    platform_event(AREA, ReplayState.FINISHED, ReplayRun, "A run of the replay tooling published everything."),
    platform_event(AREA, ReplayState.STOPPED, ReplayRun, "A run of the replay tooling was stopped (Ctrl-C)."),
    platform_event(AREA, ReplayState.FAILED, ReplayRun, "A run of the replay tooling could not go on."),
)
