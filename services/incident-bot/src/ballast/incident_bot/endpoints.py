"""`svc.incident.*`: the desk over request/reply, for the CLI and anything else on the bus.

list and show answer from the store (list from this replica's view: 503 until it has caught up with the bucket);
ack, mitigate and resolve go through the same lifecycle as Slack's buttons, role as `/incident role`. An unknown id
is a 404, a step back a 409.
postmortem writes the incident's postmortem from the event log (the same events give the same document), stores both
formats in the `postmortems` object store and answers with the one asked for; the writer posts it to Slack when the
Slack bot is wired, as `/incident postmortem` does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from pydantic import BaseModel

from ballast.bus.endpoints import EndpointError
from ballast.events.contracts.incident import (
    INCIDENT_ACK,
    INCIDENT_LIST,
    INCIDENT_MITIGATE,
    INCIDENT_POSTMORTEM,
    INCIDENT_RESOLVE,
    INCIDENT_ROLE,
    INCIDENT_SHOW,
    IncidentAction,
    IncidentList,
    IncidentQuery,
    IncidentRef,
    IncidentStatus,
    IncidentTransition,
    PostmortemDocument,
    PostmortemRequest,
    RoleAssignment,
)
from ballast.events.registry import EndpointSpec
from ballast.incident_bot.desk import IncidentNotFound
from ballast.incident_bot.lifecycle import InvalidTransition
from ballast.incident_bot.postmortem_publish import PostmortemWriter
from ballast.incident_bot.store import IncidentStore

Handler = Callable[[BaseModel], Awaitable[BaseModel]]

# NATS's default max_payload is 1 MiB; a document near it is left in the object store rather than half sent.
MAX_ANSWERED_DOCUMENT = 900_000


def incident_endpoints(
    store: Callable[[], IncidentStore], postmortems: Callable[[], PostmortemWriter]
) -> list[tuple[EndpointSpec, Handler]]:
    async def listing(request: BaseModel) -> IncidentList:
        assert isinstance(request, IncidentQuery)  # the endpoint validated it against its spec
        if not store().caught_up.is_set():
            raise EndpointError(503, "incidents are still loading; ask again shortly")
        return IncidentList(incidents=tuple(store().query(request)))

    async def show(request: BaseModel) -> IncidentTransition:
        assert isinstance(request, IncidentRef)
        try:
            return await store().get(request.incident_id)
        except IncidentNotFound:
            raise EndpointError(404, f"no incident {request.incident_id}") from None

    def action(status: IncidentStatus) -> Handler:
        async def act(request: BaseModel) -> IncidentTransition:
            assert isinstance(request, IncidentAction)
            try:
                return await store().enter(request.incident_id, status, by=request.by)
            except IncidentNotFound:
                raise EndpointError(404, f"no incident {request.incident_id}") from None
            except InvalidTransition as exc:
                raise EndpointError(409, str(exc)) from None

        return act

    async def role(request: BaseModel) -> IncidentTransition:
        assert isinstance(request, RoleAssignment)
        try:
            return await store().assign_role(request.incident_id, request.role, request.to, by=request.by)
        except IncidentNotFound:
            raise EndpointError(404, f"no incident {request.incident_id}") from None

    async def postmortem(request: BaseModel) -> PostmortemDocument:
        assert isinstance(request, PostmortemRequest)
        try:
            record = await store().get(request.incident_id)
        except IncidentNotFound:
            raise EndpointError(404, f"no incident {request.incident_id}") from None
        published = await postmortems().publish(record)
        document = published.documents[request.format]
        location = published.locations[request.format]
        if len(document.content) > MAX_ANSWERED_DOCUMENT:
            raise EndpointError(
                413, f"the postmortem is {len(document.content)} bytes, too big to answer; it is stored at {location}"
            )
        return PostmortemDocument(
            incident_id=record.incident_id,
            postmortem_id=published.postmortem.postmortem_id,
            format=request.format,
            content=document.content.decode(),
            digest=document.digest,
            location=location,
            events_read=published.events_read,
            posted_to=published.posted_to,
        )

    return [
        (INCIDENT_LIST, listing),
        (INCIDENT_SHOW, show),
        (INCIDENT_ACK, action(IncidentStatus.ACKNOWLEDGED)),
        (INCIDENT_MITIGATE, action(IncidentStatus.MITIGATED)),
        (INCIDENT_RESOLVE, action(IncidentStatus.RESOLVED)),
        (INCIDENT_ROLE, role),
        (INCIDENT_POSTMORTEM, postmortem),
    ]
