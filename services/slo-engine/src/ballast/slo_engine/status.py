"""`svc.slo.status`: every SLO's last evaluated state, answered from memory kept current by a watch on the bucket.

Any replica answers, leader or not: the bucket is the one record, and a watch delivers each stored state to every
replica's view. Until the watch has delivered what was stored when it started, the view answers 503 rather than a
partial list.
"""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

from ballast.bus.endpoints import EndpointError
from ballast.bus.kv import CaughtUp, KeyValue, Watch
from ballast.events.contracts.slo import SloStatusRequest, SloStatusResponse
from ballast.runtime.stopping import until_stopped
from ballast.slo.evaluation import BudgetState
from ballast.slo_engine.budgets import BudgetShard, slo_id


class StatusView:
    def __init__(self) -> None:
        # Per namespace, per SLO name: a request naming a namespace (and an SLO) looks it up instead of scanning
        # every SLO. The states are kept as stored and made answers when asked: every cycle stores thousands of
        # states, and a request asks for one or a few.
        self._states: dict[str, dict[str, BudgetState]] = {}
        # Which SLOs each key holds, and which key an SLO's shown state came from: while a budget of the layout
        # before shards is carried over, its old key is deleted after its shard holds it, and must not take it along.
        self._held: dict[str, tuple[tuple[str, str], ...]] = {}
        self._source: dict[tuple[str, str], str] = {}
        self.caught_up = asyncio.Event()

    async def follow(self, kv: KeyValue[BudgetShard], stop: asyncio.Event) -> None:
        """Applies the bucket's changes until `stop` is set."""
        async with kv.watch() as changes:
            await until_stopped(self._apply(changes), stop)

    async def _apply(self, changes: Watch[BudgetShard]) -> None:
        async for change in changes:
            if isinstance(change, CaughtUp):
                self.caught_up.set()
                continue
            budgets = change.value.budgets if change.value is not None else {}
            held = []
            for record in budgets.values():
                state = record.state
                where = (state.slo.namespace, state.slo.name)
                self._states.setdefault(where[0], {})[where[1]] = state
                self._source[where] = change.key
                held.append(where)
            for where in self._held.pop(change.key, ()):
                if self._source.get(where) == change.key and slo_id(*where) not in budgets:
                    del self._source[where]
                    self._states[where[0]].pop(where[1], None)
            if held:
                self._held[change.key] = tuple(held)

    def states(self) -> list[BudgetState]:
        return [state for by_name in self._states.values() for state in by_name.values()]

    def answer(self, request: SloStatusRequest) -> SloStatusResponse:
        if request.namespace is None:
            candidates = self.states()
        elif request.name is None:
            candidates = list(self._states.get(request.namespace, {}).values())
        else:
            found = self._states.get(request.namespace, {}).get(request.name)
            candidates = [found] if found is not None else []
        matching = [state for state in candidates if request.service is None or state.slo.service == request.service]
        if request.burning_only:
            matching = [s for s in matching if s.firing or s.exhausted]
        return SloStatusResponse(slos=tuple(state.status() for state in sorted(matching, key=_by_name)))

    async def handle(self, request: BaseModel) -> SloStatusResponse:
        """The endpoint handler."""
        assert isinstance(request, SloStatusRequest)  # the endpoint validated it against its spec
        if not self.caught_up.is_set():
            raise EndpointError(503, "the SLO states are still loading; ask again shortly")
        return self.answer(request)


def _by_name(state: BudgetState) -> tuple[str, str]:
    return state.slo.namespace, state.slo.name
