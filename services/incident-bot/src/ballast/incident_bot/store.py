"""The incident store: incidents in the `incidents` bucket, changed by signals, people and the deadline timer.

It implements the `IncidentDesk` seam (Slack and the CLI's endpoints call it) and takes the signals every door
produces. Every change is a compare-and-set on the incident's key: two replicas (or a replica and a redelivery) never
both apply one change, and the loser re-reads and decides again, usually that there is nothing left to do. The events
a change causes are stored with it, then published (ids fixed by the change: a repeat is stored once in the stream),
then cleared; a process stopped in between leaves them for the next change or the next start.

Active incidents hold claims on their match keys (see `signals`). A signal with no active incident opens one: the
record first, then the claims; a replica that loses the race for a claim drops its record (nothing of it was
published) and joins the winner. Claims are released when the incident resolves, so a later signal opens a new one.

Within a replica, signals that share a match key (the same alert, group or service) are handled one after the other,
and the others at the same time: an alert storm over many services is not a queue of round trips to the bucket.

Every replica keeps a view of the bucket (a KV watch) for listing and for the deadline timer, which sleeps until the
earliest escalation or resolve hold is due, or until a change moves it. The view also says which active incident
holds which match key: a signal whose key it knows reads that incident's record alone, and joins it if the record
(read now, not the view) is active and holds the key. Otherwise a firing signal opens an incident straight away
(once the view has caught up): the claims it takes say whether another replica's incident, too new for the view,
holds them already, and then it joins that one (its incident number stays unused). Other signals, and a signal that
lost an opening, read the claims in the bucket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta

from ballast.bus.kv import CaughtUp, Entry, KeyExists, KeyValue, KvConflict
from ballast.bus.publisher import Publisher
from ballast.bus.reader import StoredEvent
from ballast.events.contracts.incident import (
    IncidentEscalated,
    IncidentQuery,
    IncidentRole,
    IncidentSource,
    IncidentStatus,
    IncidentTransition,
    IncidentUpdated,
    Severity,
)
from ballast.events.envelope import new_event
from ballast.events.registry import TypeRegistry
from ballast.incident_bot.changes import (
    Outcome,
    entered,
    escalated,
    hold_ended,
    joined,
    next_deadline,
    opened,
    updated,
)
from ballast.incident_bot.desk import IncidentNotFound
from ballast.incident_bot.escalation import EscalationConfig
from ballast.incident_bot.lifecycle import is_active
from ballast.incident_bot.metrics import IncidentMetrics
from ballast.incident_bot.records import (
    COUNTER_KEY,
    INCIDENT_PREFIX,
    AlertMark,
    Claim,
    IncidentCounter,
    Outgoing,
    StoredIncident,
    claim_key,
    incident_key,
    incident_number,
)
from ballast.incident_bot.signals import Signal, SignalState, key_digest, service_key
from ballast.runtime.stopping import until_stopped

log = logging.getLogger(__name__)

OPENING_GRACE = 10.0  # seconds an incident still being opened by another replica is waited for
OPENING_POLL = 0.01  # seconds between looks at it meanwhile

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class IncidentStore:
    def __init__(
        self,
        records: KeyValue[StoredIncident],
        claims: KeyValue[Claim],
        counter: KeyValue[IncidentCounter],
        publisher: Publisher,
        registry: TypeRegistry,
        *,
        cluster: str,
        escalation: EscalationConfig,
        resolve_hold: timedelta,
        metrics: IncidentMetrics,
        clock: Clock = utc_now,
    ) -> None:
        self._records = records
        self._claims = claims
        self._counter = counter
        self._publisher = publisher
        self._registry = registry
        self.cluster = cluster
        self.source = f"/clusters/{cluster}/incident-bot"
        self.escalation = escalation
        self.resolve_hold = resolve_hold
        self.metrics = metrics
        self._clock = clock
        self._view: dict[str, StoredIncident] = {}
        # The revision of each incident's state in the view: this replica's own writes go in as they are made, and the
        # watch, bringing them back, neither applies them again nor puts an older state back.
        self._revisions: dict[str, int] = {}
        self._deadlines: dict[str, datetime] = {}  # when each incident of the view next needs the timer
        self._active: set[str] = set()
        self._holders: dict[str, str] = {}  # match key -> the active incident of the view holding its claim
        self._last_number: tuple[int, int] | None = None  # the counter as last written here: (number, revision)
        # Openings here take numbers one batch at a time (at once, all but one would lose the compare-and-set and
        # retry); those that wait meanwhile are the next batch, numbered by one write.
        self._numbering = asyncio.Lock()
        self._wanting: list[asyncio.Future[int]] = []
        self.caught_up = asyncio.Event()
        self._moved = asyncio.Event()  # a change that moved a deadline: the timer looks again
        # When the timer sleeps until (None: until woken). Only a deadline before it wakes the timer: in a storm
        # every change would otherwise make it look at every incident's deadline, O(incidents) per change.
        self._wake_at: datetime | None = None
        # Signals sharing a match key take turns in this replica: matching and opening must see each other's claims.
        # Across replicas the claims' compare-and-set decides.
        self._keys = KeyLocks()

    # --- signals ---------------------------------------------------------------------------------------------------

    async def handle(self, signal: Signal) -> tuple[Outcome, str | None]:
        """Opens, joins, resolves or acknowledges an incident from `signal`; the outcome and the incident's id."""
        (result,) = await self.handle_all([signal])
        return result

    async def handle_all(self, signals: Sequence[Signal]) -> list[tuple[Outcome, str | None]]:
        """`handle` for each of `signals` in turn (an Alertmanager group's alerts), holding the keys of all of them
        meanwhile: a record one of them read or wrote serves the next, instead of being read again, and firing
        signals that follow each other into one incident join it in one change."""
        results: list[tuple[Outcome, str | None]] = []
        async with self._keys.holding(k for signal in signals for k in signal.match_keys()):
            records: dict[str, Entry[StoredIncident]] = {}  # as last read or written by these signals
            while len(results) < len(signals):
                done = await self._join_run(signals[len(results) :], records)
                if not done:
                    done = await self._handle(signals[len(results)], records, signals[len(results) + 1 :])
                for signal, (outcome, _) in zip(signals[len(results) :], done, strict=False):
                    self.metrics.signals.labels(signal.source.value, outcome.value).inc()
                results.extend(done)
        return results

    async def _join_run(
        self, signals: Sequence[Signal], records: dict[str, Entry[StoredIncident]]
    ) -> list[tuple[Outcome, str | None]]:
        """The firing signals at the head of `signals` that go, by a key the view knows, to the active incident
        these signals last read or wrote, joined to it in one change (their new keys claimed first); the outcome of
        each, or nothing (the caller handles the head alone) when fewer than two go there or the incident went."""
        run: list[Signal] = []
        incident_id: str | None = None
        for signal in signals:
            if signal.state is not SignalState.FIRING:
                break
            match_keys = signal.match_keys()
            known = next(((key, self._holders[key]) for key in match_keys if key in self._holders), None)
            if known is None or (incident_id is not None and known[1] != incident_id):
                break
            entry = records.get(known[1])
            if entry is None or entry.value is None or known[0] not in entry.value.claims:
                break
            if not is_active(entry.value.record.status):
                break
            incident_id = known[1]
            run.append(signal)
        if incident_id is None or len(run) < 2:
            return []
        entry = records[incident_id]
        assert entry.value is not None
        wanted = list(dict.fromkeys(k for signal in run for k in signal.match_keys() if k not in entry.value.claims))
        claimed = await self._claim(incident_id, wanted)
        outcomes: list[Outcome] = []

        def join_all(stored: StoredIncident) -> StoredIncident | None:
            outcomes.clear()
            if not is_active(stored.record.status):
                return None
            changed = False
            for signal in run:
                after, outcome = joined(stored, signal, at=self._clock(), hold=self.resolve_hold)
                outcomes.append(outcome)
                if after is not None:
                    stored, changed = after, True
            held = tuple(k for k in claimed if k not in stored.claims)
            if held:
                stored, changed = stored.model_copy(update={"claims": stored.claims + held}), True
            return stored if changed else None

        try:
            stored, _ = await self._mutate(incident_id, join_all, entry, records)
        except IncidentNotFound:
            stored = None
        if stored is None or not is_active(stored.record.status) or len(outcomes) != len(run):
            # it went meanwhile: each signal on its own, as about a new incident
            records.pop(incident_id, None)
            await self._drop_claims(incident_id, tuple(wanted))
            return []
        return [(outcome, incident_id) for outcome in outcomes]

    async def _handle(
        self, signal: Signal, records: dict[str, Entry[StoredIncident]], following: Sequence[Signal] = ()
    ) -> list[tuple[Outcome, str | None]]:
        """The outcome of `signal`, and of those of `following` (the signals after it) that joined the incident it
        opened in the same change."""
        match_keys = signal.match_keys()
        lost_an_opening = False
        while True:
            # Only a firing signal may skip the claims: a resolution must find its incident, however new.
            read_claims = lost_an_opening or signal.state is not SignalState.FIRING
            incident_id, entry = await self._find(match_keys, records, read_claims=read_claims)
            if incident_id is None:
                if signal.state is not SignalState.FIRING:
                    return [(Outcome.IGNORED, None)]
                joining = self._opening_run(signal, following)
                opened_id, joined_now = await self._open(signal, match_keys, records, joining)
                if opened_id is None:
                    lost_an_opening = True
                    continue  # another replica opened one for the same thing meanwhile: join it
                return [(Outcome.OPENED, opened_id), *((outcome, opened_id) for outcome in joined_now)]
            if entry is None:
                entry = await self._read(incident_id, records)
            if entry is None or entry.value is None:
                records.pop(incident_id, None)
                await self._drop_claims(incident_id, match_keys)
                continue
            # A firing signal that joins holds its keys for the incident too, so that its resolution finds it. They
            # are claimed first and written with the join, in one change.
            claimed: tuple[str, ...] = ()
            if signal.state is SignalState.FIRING and is_active(entry.value.record.status):
                claimed = await self._claim(incident_id, [k for k in match_keys if k not in entry.value.claims])
            outcome = Outcome.DUPLICATE

            def join(stored: StoredIncident, claimed: tuple[str, ...] = claimed) -> StoredIncident | None:
                nonlocal outcome
                if not is_active(stored.record.status):
                    return None
                changed, outcome = joined(stored, signal, at=self._clock(), hold=self.resolve_hold)
                held = tuple(k for k in claimed if k not in stored.claims)
                if held:
                    changed = changed or stored
                    changed = changed.model_copy(update={"claims": changed.claims + held})
                return changed

            try:
                stored, _ = await self._mutate(incident_id, join, entry, records)
            except IncidentNotFound:
                await self._drop_claims(incident_id, match_keys)
                continue
            if not is_active(stored.record.status) and outcome not in (Outcome.RESOLVED,):
                records.pop(incident_id, None)
                await self._drop_claims(incident_id, match_keys)
                continue  # its incident resolved meanwhile: the signal is about a new one
            return [(outcome, incident_id)]

    def _opening_run(self, signal: Signal, following: Sequence[Signal]) -> list[Signal]:
        """The firing signals at the head of `following` of `signal`'s Alertmanager group that no incident of the
        view holds a key of: they join the incident `signal` opens, in its opening change."""
        run: list[Signal] = []
        if signal.group_key is None:
            return run
        for other in following:
            if other.state is not SignalState.FIRING or other.group_key != signal.group_key:
                break
            if any(key in self._holders for key in other.match_keys()):
                break
            run.append(other)
        return run

    def _claim_key(self, match_key: str) -> str:
        return claim_key(key_digest(f"{self.cluster}|{match_key}"))  # clusters sharing a bus share no incidents

    async def _read(self, incident_id: str, records: dict[str, Entry[StoredIncident]]) -> Entry[StoredIncident] | None:
        """The incident's record as these signals last read or wrote it, else read now."""
        entry = records.get(incident_id)
        if entry is None and _valid_id(incident_id):
            entry = await self._records.get(incident_key(incident_id))
            if entry is not None and entry.value is not None:
                records[incident_id] = entry
        return entry

    async def _find(
        self, match_keys: tuple[str, ...], records: dict[str, Entry[StoredIncident]], *, read_claims: bool = False
    ) -> tuple[str | None, Entry[StoredIncident] | None]:
        """The incident holding the most specific of `match_keys`, with its record when it was read to find it.

        When the view knows a holder, its record is read: active and holding the key, it is the one (a claim goes
        only once its incident is no longer active). Else, once the view has caught up, no incident holds them but
        perhaps one another replica opened too recently for the view to show: the claims an opening takes tell
        that (it then loses its number and comes back here with `read_claims`), so they are not read first, which
        would cost every new incident of a storm three reads. Before the view caught up, or with `read_claims`, the
        claims are read: the fingerprint's alone, the other keys' at once."""
        known = next(((key, self._holders[key]) for key in match_keys if key in self._holders), None)
        if known is not None:
            key, holder = known
            entry = await self._read(holder, records)
            if (
                entry is not None
                and entry.value is not None
                and is_active(entry.value.record.status)
                and key in entry.value.claims
            ):
                return holder, entry
        if self.caught_up.is_set() and not read_claims:
            return None, None
        first, *others = match_keys
        found = await self._holder(first)
        if found is not None or not others:
            return found, None
        holders = await asyncio.gather(*(self._holder(match_key) for match_key in others))
        return next((holder for holder in holders if holder is not None), None), None

    async def _holder(self, match_key: str) -> str | None:
        entry = await self._claims.get(self._claim_key(match_key))
        return entry.value.incident_id if entry is not None and entry.value is not None else None

    async def _open(
        self,
        signal: Signal,
        match_keys: tuple[str, ...],
        records: dict[str, Entry[StoredIncident]],
        joining: Sequence[Signal] = (),
    ) -> tuple[str | None, list[Outcome]]:
        """Opens an incident for `signal`, `joining` joined to it in the same change; its id and their outcomes, or
        None (and nothing joined) if another replica just opened one for it."""
        incident_id = f"INC-{await self._next_number()}"
        policy = self.escalation.policy_for(signal.severity, signal.service)
        at = self._clock()
        stored = opened(self.cluster, incident_id, signal, at=at, policy=policy, claims=match_keys)
        outcomes: list[Outcome] = []
        for other in joining:
            after, outcome = joined(stored, other, at=at, hold=self.resolve_hold)
            outcomes.append(outcome)
            stored = after or stored
        key = incident_key(incident_id)
        revision = await self._records.create(key, stored.model_copy(update={"opening": True}))
        taken: list[str] = []
        # One key after another, most specific first: of two replicas opening for one group, whoever takes a key
        # first takes those after it too, where claims taken at once could leave each with some and both backing off.
        for match_key in match_keys:
            held_by = await self._take_claim(incident_id, match_key)
            if held_by is not None:  # another replica's incident for the same thing: ours was never published
                for mine in taken:
                    await self._release(incident_id, mine)
                try:
                    await self._records.delete(key, revision)
                except KvConflict:  # only after OPENING_GRACE: another replica took it over and announced it
                    log.warning("incident %s was taken over while it opened; it stays", incident_id)
                return None, []
            taken.append(match_key)
        # The joining alerts' own keys, at once (they are not contested as the group's are); written with the
        # events' clearing below. One another incident holds stays its (the alert is in this one all the same).
        extra = list(dict.fromkeys(k for other in joining for k in other.match_keys() if k not in match_keys))
        if extra:
            stored = stored.model_copy(update={"claims": match_keys + await self._claim(incident_id, extra)})
        self.metrics.opened.labels(signal.source.value, signal.severity.value).inc()
        self.metrics.transitions.labels(IncidentStatus.OPEN.value).inc()
        self._seen(stored, revision)
        _remember(records, incident_id, await self._flush(key, stored, revision))
        log.info("incident opened", extra={"incident": incident_id, "service": signal.service, "source": signal.source})
        return incident_id, outcomes

    async def _take_claim(self, incident_id: str, match_key: str) -> str | None:
        """Claims `match_key` for `incident_id`; the id of the active incident holding it already, if any."""
        key = self._claim_key(match_key)
        while True:
            try:
                await self._claims.create(key, Claim(incident_id=incident_id, match_key=match_key))
                return None
            except KeyExists:
                entry = await self._claims.get(key)
                if entry is None or entry.value is None:
                    continue  # released meanwhile
                holder = entry.value.incident_id
                if holder == incident_id:
                    return None
                if await self._is_active(holder):
                    return holder
                with contextlib.suppress(KvConflict):  # left by an incident that resolved before releasing it
                    await self._claims.delete(key, entry.revision)

    async def _claim(self, incident_id: str, match_keys: list[str]) -> tuple[str, ...]:
        """Claims `match_keys` for the incident; those it now holds (not those another active incident holds)."""
        taken = await asyncio.gather(*(self._take_claim(incident_id, k) for k in match_keys))
        return tuple(k for k, holder in zip(match_keys, taken, strict=True) if holder is None)

    async def _release(self, incident_id: str, match_key: str) -> None:
        key = self._claim_key(match_key)
        entry = await self._claims.get(key)
        if entry is not None and entry.value is not None and entry.value.incident_id == incident_id:
            with contextlib.suppress(KvConflict):
                await self._claims.delete(key, entry.revision)

    async def _drop_claims(self, incident_id: str, match_keys: tuple[str, ...]) -> None:
        for match_key in match_keys:
            await self._release(incident_id, match_key)

    async def _is_active(self, incident_id: str) -> bool:
        entry = await self._records.get(incident_key(incident_id))
        return entry is not None and entry.value is not None and is_active(entry.value.record.status)

    async def _next_number(self) -> int:
        """The next incident number. Openings that ask while a write of the counter is under way are numbered
        together by the next one: in an alert storm each opening would otherwise wait for all those before it, one
        round trip each."""
        wanted: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._wanting.append(wanted)
        async with self._numbering:
            if not wanted.done():
                batch, self._wanting = self._wanting, []
                try:
                    first = await self._take_numbers(len(batch))
                except BaseException as exc:
                    failed = exc if isinstance(exc, Exception) else RuntimeError("incident numbering interrupted")
                    for other in batch:
                        if other is not wanted and not other.done():
                            other.set_exception(failed)
                    raise
                for offset, waiting in enumerate(batch):
                    if not waiting.done():
                        waiting.set_result(first + offset)
        return await wanted

    async def _take_numbers(self, count: int) -> int:
        """Moves the counter on by `count` (compare-and-set on the value as this replica last wrote it, re-read when
        another replica moved it); the first of the numbers taken."""
        while True:
            try:
                if self._last_number is None:
                    entry = await self._counter.get(COUNTER_KEY)
                    if entry is None or entry.value is None:
                        created = await self._counter.create(COUNTER_KEY, IncidentCounter(last=count))
                        self._last_number = (count, created)
                        return 1
                    self._last_number = (entry.value.last, entry.revision)
                last, revision = self._last_number
                written = await self._counter.update(COUNTER_KEY, IncidentCounter(last=last + count), revision)
            except KvConflict:
                self._last_number = None
                continue
            self._last_number = (last + count, written)
            return last + 1

    # --- the desk (IncidentDesk) -----------------------------------------------------------------------------------

    async def declare(self, *, title: str, service: str, severity: Severity, by: str) -> IncidentTransition:
        """Opens an incident a person declared; it joins nothing and claims only its own fingerprint."""
        number = await self._next_number()
        signal = Signal(
            source=IncidentSource.SLACK,
            state=SignalState.FIRING,
            fingerprint=f"declared:INC-{number}",
            service=service,
            joins_service=False,
            severity=severity,
            title=title,
            at=self._clock(),
            by=by,
        )
        incident_id = f"INC-{number}"
        policy = self.escalation.policy_for(severity, service)
        stored = opened(self.cluster, incident_id, signal, at=signal.at, policy=policy, claims=())
        key = incident_key(incident_id)
        revision = await self._records.create(key, stored)
        self.metrics.opened.labels(IncidentSource.SLACK.value, severity.value).inc()
        self.metrics.transitions.labels(IncidentStatus.OPEN.value).inc()
        self._seen(stored, revision)
        await self._flush(key, stored, revision)
        return stored.record

    async def acknowledge(self, incident_id: str, *, by: str) -> IncidentTransition:
        return await self.enter(incident_id, IncidentStatus.ACKNOWLEDGED, by=by)

    async def mitigate(self, incident_id: str, *, by: str) -> IncidentTransition:
        return await self.enter(incident_id, IncidentStatus.MITIGATED, by=by)

    async def resolve(self, incident_id: str, *, by: str) -> IncidentTransition:
        return await self.enter(incident_id, IncidentStatus.RESOLVED, by=by)

    async def close(self, incident_id: str, *, by: str) -> IncidentTransition:
        return await self.enter(incident_id, IncidentStatus.CLOSED, by=by)

    async def set_severity(self, incident_id: str, severity: Severity, *, by: str) -> IncidentTransition:
        stored, _ = await self._mutate(incident_id, lambda s: updated(s, at=self._clock(), by=by, severity=severity))
        return stored.record

    async def assign_role(self, incident_id: str, role: IncidentRole, to: str, *, by: str) -> IncidentTransition:
        stored, _ = await self._mutate(incident_id, lambda s: updated(s, at=self._clock(), by=by, role=(role, to)))
        return stored.record

    async def get(self, incident_id: str) -> IncidentTransition:
        entry = await self._records.get(incident_key(incident_id)) if _valid_id(incident_id) else None
        if entry is None or entry.value is None:
            raise IncidentNotFound(incident_id)
        return entry.value.record

    async def open_incidents(self) -> list[IncidentTransition]:
        return self.query(IncidentQuery())

    def query(self, query: IncidentQuery) -> list[IncidentTransition]:
        """From this replica's view of the bucket, oldest first."""
        found = [
            stored.record
            for stored in self._view.values()
            if (query.include_resolved or is_active(stored.record.status))
            and (query.service is None or stored.record.service == query.service)
            and (query.status is None or stored.record.status is query.status)
        ]
        return sorted(found, key=lambda r: (r.opened_at, r.incident_id))

    async def enter(self, incident_id: str, status: IncidentStatus, *, by: str | None) -> IncidentTransition:
        """Moves the incident to `status`; `InvalidTransition` for a step back, `IncidentNotFound` for no such id."""
        stored, _ = await self._mutate(incident_id, lambda s: entered(s, status, at=self._clock(), by=by))
        return stored.record

    # --- the deadline timer ----------------------------------------------------------------------------------------

    async def run_deadlines(self, stop: asyncio.Event) -> None:
        """Until `stop`: escalates unacknowledged incidents and ends resolve holds when they are due, sleeping until
        the earliest deadline or until a change moves it."""
        await self.caught_up.wait()
        while not stop.is_set():
            self._moved.clear()
            self._wake_at = None  # while it looks (and acts, which awaits), any deadline wakes it again
            now = self._clock()
            soonest: datetime | None = None
            for incident_id, due in list(self._deadlines.items()):
                if due <= now:
                    await self._on_due(incident_id)
                    continue  # the change moves the deadline; the view holds the new one next round
                soonest = due if soonest is None or due < soonest else soonest
            delay = None if soonest is None else max((soonest - self._clock()).total_seconds(), 0.0)
            self._wake_at = soonest
            moved = asyncio.ensure_future(self._moved.wait())
            stopping = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait({moved, stopping}, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
            finally:
                moved.cancel()
                stopping.cancel()

    async def _on_due(self, incident_id: str) -> None:
        def change(stored: StoredIncident) -> StoredIncident | None:
            now = self._clock()
            policy = self.escalation.policies.get(stored.policy) or self.escalation.policies["default"]
            after_hold = hold_ended(stored, at=now)
            if after_hold is not None:
                return after_hold
            return escalated(stored, policy, at=now)

        try:
            await self._mutate(incident_id, change)
        except IncidentNotFound:
            self._forget(incident_id)
        except Exception:  # one incident's trouble must not stop the timer for the others
            log.exception("deadline of %s failed; retrying at the next round", incident_id)

    # --- state, events and the view --------------------------------------------------------------------------------

    async def _mutate(
        self,
        incident_id: str,
        change: Callable[[StoredIncident], StoredIncident | None],
        entry: Entry[StoredIncident] | None = None,
        records: dict[str, Entry[StoredIncident]] | None = None,
    ) -> tuple[StoredIncident, bool]:
        """Applies `change` with compare-and-set until it sticks, first to `entry` if the caller has just read it;
        the stored incident after it, and whether it changed. Publishes the events the change caused. `records`
        gets the record as it stands after."""
        records = {} if records is None else records
        patience: float | None = None  # until when a record still being opened is waited for
        if not _valid_id(incident_id):
            raise IncidentNotFound(incident_id)
        key = incident_key(incident_id)
        while True:
            if entry is None:
                entry = await self._records.get(key)
            if entry is None or entry.value is None:
                records.pop(incident_id, None)
                raise IncidentNotFound(incident_id)
            before = entry.value
            if before.opening:
                # Another replica is still taking its claims: wait, unless it has taken too long (it died half way:
                # this change takes the incident over, and announces it).
                loop = asyncio.get_running_loop()
                patience = patience if patience is not None else loop.time() + OPENING_GRACE
                if loop.time() < patience:
                    await asyncio.sleep(OPENING_POLL)
                    entry = None
                    continue
            after = change(before)
            if before.opening:
                after = (after or before).model_copy(update={"opening": False})
            if after is None:
                _remember(
                    records,
                    incident_id,
                    await self._flush(key, before, entry.revision) if before.unpublished else entry,
                )
                return before, False
            try:
                revision = await self._records.update(key, after, entry.revision)
            except KvConflict:
                entry = None
                continue
            break
        self._count(before, after)
        self._seen(after, revision)
        _remember(records, incident_id, await self._flush(key, after, revision))
        if is_active(before.record.status) and not is_active(after.record.status):
            await self._drop_claims(incident_id, after.claims)
        return after, True

    def _count(self, before: StoredIncident, after: StoredIncident) -> None:
        record = after.record
        if record.status is not before.record.status:
            self.metrics.transitions.labels(record.status.value).inc()
            if record.status is IncidentStatus.ACKNOWLEDGED and record.time_to_acknowledge is not None:
                self.metrics.time_to_acknowledge.labels(record.severity.value).observe(
                    record.time_to_acknowledge.total_seconds()
                )
            if record.status is IncidentStatus.RESOLVED and record.time_to_resolve is not None:
                self.metrics.time_to_resolve.labels(record.severity.value).observe(
                    record.time_to_resolve.total_seconds()
                )
        if after.escalation_level > before.escalation_level:
            self.metrics.escalations.inc(after.escalation_level - before.escalation_level)
        if after.flaps_suppressed > before.flaps_suppressed:
            self.metrics.flaps_suppressed.inc()

    async def _flush(self, key: str, stored: StoredIncident, revision: int) -> Entry[StoredIncident] | None:
        """Publishes what `stored` holds unpublished, then stores it without them; the entry as stored then (None if
        a newer change was stored meanwhile)."""
        if not stored.unpublished:
            return Entry(key, revision, stored)
        await self.publish(stored.unpublished)
        cleared = stored.model_copy(update={"unpublished": ()})
        try:
            written = await self._records.update(key, cleared, revision)
        except KvConflict:  # a newer change was stored, which published these (same ids) before its own
            return None
        self._seen(cleared, written)
        return Entry(key, written, cleared)

    async def publish(self, outgoing: tuple[Outgoing, ...]) -> None:
        envelopes = []
        for out in outgoing:
            data = self._registry[out.ce_type].model.model_validate(out.data)
            envelope = new_event(out.ce_type, self.source, data, subject=out.ce_subject, event_id=out.id)
            envelopes.append((out.subject, envelope))
        await self._publisher.publish_all(envelopes)

    def _seen(self, stored: StoredIncident, revision: int) -> None:
        """The view takes `stored` as the incident's state at `revision`, unless it holds that one or a later one."""
        incident_id = stored.incident_id
        if revision <= self._revisions.get(incident_id, 0):
            return
        self._revisions[incident_id] = revision
        self._unhold(self._view.get(incident_id))
        self._view[incident_id] = stored
        if is_active(stored.record.status):
            self._active.add(incident_id)
            self._holders.update(dict.fromkeys(stored.claims, incident_id))
        else:
            self._active.discard(incident_id)
        self.metrics.active.set(len(self._active))
        policy = self.escalation.policies.get(stored.policy) or self.escalation.policies["default"]
        due = next_deadline(stored, policy)
        if due != self._deadlines.get(incident_id):
            if due is None:
                del self._deadlines[incident_id]
            else:
                self._deadlines[incident_id] = due
                if self._wake_at is None or due < self._wake_at:
                    self._moved.set()  # a deadline gone or later needs no look before the timer wakes anyway

    def _unhold(self, stored: StoredIncident | None) -> None:
        if stored is not None:
            for match_key in stored.claims:
                if self._holders.get(match_key) == stored.incident_id:
                    del self._holders[match_key]

    def _forget(self, incident_id: str) -> None:
        self._unhold(self._view.pop(incident_id, None))
        self._revisions.pop(incident_id, None)
        self._active.discard(incident_id)
        self.metrics.active.set(len(self._active))
        self._deadlines.pop(incident_id, None)  # the timer, waking for it, finds nothing due

    async def follow(self, stop: asyncio.Event) -> None:
        """Keeps the view current from a watch on the bucket until `stop`."""
        async with self._records.watch(f"{INCIDENT_PREFIX}>") as changes:

            async def apply() -> None:
                async for change in changes:
                    if isinstance(change, CaughtUp):
                        self.caught_up.set()
                        self._moved.set()
                    elif change.value is None:
                        self._forget(change.key.removeprefix(INCIDENT_PREFIX))
                    elif change.value.record.cluster == self.cluster:  # a bus shared by clusters: only ours
                        self._seen(change.value, change.revision)

            await until_stopped(apply(), stop)

    async def recover(self) -> None:
        """At start, once the view caught up: publishes what a stopped process left unpublished, and makes sure every
        active incident holds its claims (a process stopped between writing an incident and claiming)."""
        for stored in list(self._view.values()):
            if stored.unpublished:
                with contextlib.suppress(IncidentNotFound):
                    await self._mutate(stored.incident_id, lambda s: None)
            if is_active(stored.record.status):
                for match_key in stored.claims:
                    await self._take_claim(stored.incident_id, match_key)

    async def restore(self, events: AsyncIterable[StoredEvent]) -> list[str]:
        """Rebuilds incidents missing from the bucket (lost, or never written there) from their events, in stream
        order: each transition carries the whole record, escalations the level reached. Active ones get back their
        claims and a firing mark for the alert that opened them. Returns the ids restored."""
        latest: dict[str, IncidentTransition] = {}
        levels: dict[str, int] = {}
        async for stored_event in events:
            event = stored_event.event
            if event is None:
                log.warning("skipping a malformed incident event at sequence %d: %s", stored_event.sequence,
                            stored_event.error)  # fmt: skip
                continue
            data = event.data
            if isinstance(data, IncidentTransition) and data.cluster == self.cluster:
                latest[data.incident_id] = data
            elif isinstance(data, IncidentEscalated) and data.cluster == self.cluster:
                levels[data.incident_id] = max(levels.get(data.incident_id, 0), data.level)
            elif isinstance(data, IncidentUpdated) and data.incident_id in latest and data.cluster == self.cluster:
                latest[data.incident_id] = latest[data.incident_id].model_copy(
                    update={
                        "severity": data.severity,
                        "commander": data.commander,
                        "roles": data.roles,
                        "changed_by": data.changed_by,
                    }
                )
        restored = []
        highest = 0
        for incident_id, record in latest.items():
            highest = max(highest, incident_number(incident_id) or 0)
            key = incident_key(incident_id)
            if await self._records.get(key) is not None:
                continue
            active = is_active(record.status)
            claims = [f"fp:{record.fingerprint}"]
            if record.group_key:
                claims.append(f"group:{record.group_key}")
            if record.source is not IncidentSource.SLACK:
                claims.append(service_key(record.namespace, record.service))
            stored = StoredIncident(
                record=record,
                alerts={
                    record.fingerprint: AlertMark(
                        source=record.source, title=record.title, firing=active, since=record.opened_at
                    )
                },
                claims=tuple(claims) if active else (),
                policy=self.escalation.policy_for(record.severity, record.service),
                escalation_level=levels.get(incident_id, 0),
            )
            with contextlib.suppress(KeyExists):  # another replica restored it meanwhile
                revision = await self._records.create(key, stored)
                restored.append(incident_id)
                self._seen(stored, revision)
            if active:
                for match_key in stored.claims:
                    await self._take_claim(incident_id, match_key)
        await self._raise_counter(highest)
        if restored:
            log.warning("restored %d incidents from the incident stream", len(restored), extra={"ids": restored})
        return restored

    async def _raise_counter(self, highest: int) -> None:
        self._last_number = None
        while True:
            entry = await self._counter.get(COUNTER_KEY)
            try:
                if entry is None or entry.value is None:
                    await self._counter.create(COUNTER_KEY, IncidentCounter(last=highest))
                elif entry.value.last < highest:
                    await self._counter.update(COUNTER_KEY, IncidentCounter(last=highest), entry.revision)
                return
            except KvConflict:
                continue

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop`: follows the bucket, recovers what a stopped process left once caught up, runs the timer."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self.follow(stop))
            caught_up = asyncio.ensure_future(self.caught_up.wait())
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait({caught_up, stopping}, return_when=asyncio.FIRST_COMPLETED)
            caught_up.cancel()
            stopping.cancel()
            if stop.is_set():
                return
            await self.recover()
            tasks.create_task(self.run_deadlines(stop))

    def view(self) -> dict[str, StoredIncident]:
        return dict(self._view)


def _remember(records: dict[str, Entry[StoredIncident]], incident_id: str, entry: Entry[StoredIncident] | None) -> None:
    if entry is None:
        records.pop(incident_id, None)
    else:
        records[incident_id] = entry


class KeyLocks:
    """A lock per match key, taken for every key of a signal: signals sharing a key (the same alert, group or
    service) take turns, the others go on at once. Keys are taken in one order, so two signals never wait on each
    other; a key's lock goes when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}  # key -> (lock, signals holding or waiting)

    @contextlib.asynccontextmanager
    async def holding(self, keys: Iterable[str]) -> AsyncIterator[None]:
        ordered = sorted(set(keys))
        for key in ordered:
            lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
            self._locks[key] = (lock, users + 1)
        taken: list[asyncio.Lock] = []
        try:
            for key in ordered:
                lock = self._locks[key][0]
                await lock.acquire()
                taken.append(lock)
            yield
        finally:
            for lock in reversed(taken):
                lock.release()
            for key in ordered:
                lock, users = self._locks[key]
                if users == 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


def _valid_id(incident_id: str) -> bool:
    return bool(incident_id) and all(c.isalnum() or c in "-_" for c in incident_id)
