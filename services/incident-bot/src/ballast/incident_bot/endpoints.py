"""`svc.incident.*`: the desk over request/reply, for the CLI and anything else on the bus.

list and show answer from the store (list from this replica's view: 503 until it has caught up with the bucket);
ack, mitigate and resolve go through the same lifecycle as Slack's buttons. An unknown id is a 404, a step back a 409.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from pydantic import BaseModel

from ballast.bus.endpoints import EndpointError
from ballast.events.contracts.incident import (
    INCIDENT_ACK,
    INCIDENT_LIST,
    INCIDENT_MITIGATE,
    INCIDENT_RESOLVE,
    INCIDENT_SHOW,
    IncidentAction,
    IncidentList,
    IncidentQuery,
    IncidentRef,
    IncidentStatus,
    IncidentTransition,
)
from ballast.events.registry import EndpointSpec
from ballast.incident_bot.desk import IncidentNotFound
from ballast.incident_bot.lifecycle import InvalidTransition
from ballast.incident_bot.store import IncidentStore

Handler = Callable[[BaseModel], Awaitable[BaseModel]]


def incident_endpoints(store: Callable[[], IncidentStore]) -> list[tuple[EndpointSpec, Handler]]:
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

    return [
        (INCIDENT_LIST, listing),
        (INCIDENT_SHOW, show),
        (INCIDENT_ACK, action(IncidentStatus.ACKNOWLEDGED)),
        (INCIDENT_MITIGATE, action(IncidentStatus.MITIGATED)),
        (INCIDENT_RESOLVE, action(IncidentStatus.RESOLVED)),
    ]
