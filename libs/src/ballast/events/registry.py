"""What each message on the bus is called and carries (events, commands, endpoints), and the lookup by `ce-type`."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from pydantic import BaseModel


@dataclass(frozen=True)
class EventSpec:
    """One versioned CloudEvent type (an event, or a command on `cmd.>`): its name, its payload and its subject.

    `subject` is a template over the subject tokens (`{cluster}`, `{namespace}`); object names never go into it
    because they may contain dots.
    """

    ce_type: str
    model: type[BaseModel]
    subject: str
    description: str


@dataclass(frozen=True)
class EndpointSpec:
    """A request/reply endpoint served with NATS micro; callers get a typed response or a typed error."""

    service: str
    name: str
    request: type[BaseModel]
    response: type[BaseModel]
    description: str
    version: str = "1.0.0"

    @property
    def subject(self) -> str:
        return f"svc.{self.service}.{self.name}"


class TypeRegistry:
    """Looks up the payload model by `ce-type`; decoding refuses any type not registered here."""

    def __init__(self, specs: Iterable[EventSpec]) -> None:
        self._by_type: dict[str, EventSpec] = {}
        for spec in specs:
            if spec.ce_type in self._by_type:
                raise ValueError(f"event type {spec.ce_type} declared twice")
            self._by_type[spec.ce_type] = spec

    def get(self, ce_type: str) -> EventSpec | None:
        return self._by_type.get(ce_type)

    def __getitem__(self, ce_type: str) -> EventSpec:
        return self._by_type[ce_type]

    def __iter__(self) -> Iterator[EventSpec]:
        return iter(self._by_type.values())

    def __len__(self) -> int:
        return len(self._by_type)
