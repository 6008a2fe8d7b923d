"""The replay tooling's record on the bus (`evt.replay`, `ballast.events.contracts.replay`): a run that publishes says
when it starts and how it ends, in the same log as what it publishes.

The start is published before anything else, and a start that cannot be recorded stops the run before it publishes
anything: nothing goes on the bus again unrecorded. The end is published whatever the outcome; if that fails, the
caller says so (the events are stored either way).
"""

from __future__ import annotations

import getpass
import os
import socket
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ballast.bus import Bus
from ballast.events import new_event
from ballast.events.contracts.replay import (
    ReplayOperation,
    ReplayRun,
    ReplayState,
    replay_event_type,
    replay_subject,
)
from ballast.replay.publishing import Tally
from ballast.runtime.config import ServiceSettings

SOURCE = "/ballast/events"  # ce-source of the record: the replay tooling, wherever it runs


def current_actor() -> str:
    """Who runs the command: `user@host`."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container's random user)
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}"


def current_cluster() -> str:
    """The cluster token of the record's subject, as the services take it: `BALLAST_CLUSTER` (checked as theirs is,
    a bad value raising an error that names it), else `local`."""
    return ServiceSettings().cluster


@dataclass
class Audit:
    """The record of one run; `started()` before publishing, `ended(...)` after."""

    bus: Bus
    run: str
    operation: ReplayOperation
    source: str
    target: str
    live: bool
    planned: int | None = None
    cluster: str = field(default_factory=current_cluster)
    actor: str = field(default_factory=current_actor)
    invocation: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def _record(self, **outcome: object) -> ReplayRun:
        return ReplayRun.model_validate(
            {
                "run": self.run,
                "operation": self.operation,
                "source": self.source,
                "target": self.target,
                "live": self.live,
                "actor": self.actor,
                "planned": self.planned,
                "started_at": self.started_at,
                **outcome,
            }
        )

    async def _publish(self, state: ReplayState, record: ReplayRun) -> None:
        event = new_event(
            replay_event_type(state),
            SOURCE,
            record,
            subject=f"{self.operation}/{self.run}",
            event_id=f"replay:{self.run}:{self.invocation}:{state}",
        )
        await self.bus.publisher.publish(replay_subject(self.cluster, state), event)

    async def started(self) -> None:
        await self._publish(ReplayState.STARTED, self._record())

    async def ended(
        self, tally: Tally, *, stopped: bool = False, error: str | None = None, resume: str | None = None
    ) -> None:
        """`resume` (how to go on) is recorded only for a run that did not get to its end."""
        unfinished = stopped or error is not None
        state = ReplayState.FAILED if error else ReplayState.STOPPED if stopped else ReplayState.FINISHED
        record = self._record(
            stored=tally.stored,
            duplicates=tally.duplicates,
            error=error,
            resume=resume if unfinished else None,
            ended_at=datetime.now(UTC),
        )
        await self._publish(state, record)
