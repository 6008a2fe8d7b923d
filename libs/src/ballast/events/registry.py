"""The mapping from a `ce-type` to the pydantic model its `data` must satisfy."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from pydantic import BaseModel


@dataclass(frozen=True)
class EventType:
    """One versioned event type: what it is called, what it carries and where it is published.

    `subject` is a template over the subject tokens (`{cluster}`, `{namespace}`, ...); object names never go into
    it because they may contain dots.
    """

    ce_type: str
    model: type[BaseModel]
    subject: str
    description: str

    def subject_for(self, **tokens: str) -> str:
        return self.subject.format(**tokens)


class TypeRegistry:
    """Looks up the payload model by `ce-type`; decoding refuses any type not registered here."""

    def __init__(self, types: Iterable[EventType]) -> None:
        self._by_type: dict[str, EventType] = {}
        for event_type in types:
            if event_type.ce_type in self._by_type:
                raise ValueError(f"event type {event_type.ce_type} declared twice")
            self._by_type[event_type.ce_type] = event_type

    def get(self, ce_type: str) -> EventType | None:
        return self._by_type.get(ce_type)

    def __getitem__(self, ce_type: str) -> EventType:
        return self._by_type[ce_type]

    def __iter__(self) -> Iterator[EventType]:
        return iter(self._by_type.values())

    def __len__(self) -> int:
        return len(self._by_type)
