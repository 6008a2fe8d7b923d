"""Per-key memory of a controller: one record per object, forgotten in one place.

What a controller remembers between reconciles of an object (what it last applied, the status it last wrote) lives
in one record, so forgetting the object — it was deleted — is one `forget(key)`, and nothing can be left behind in a
side table that a later object of the same name would inherit.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
R = TypeVar("R")


class Memory(Generic[K, R]):
    def __init__(self, record: Callable[[], R]) -> None:
        self._new = record
        self._records: dict[K, R] = {}
        self._on_forget: list[Callable[[K], None]] = []

    def __getitem__(self, key: K) -> R:
        """The key's record, made fresh the first time it is asked for."""
        record = self._records.get(key)
        if record is None:
            record = self._records[key] = self._new()
        return record

    def get(self, key: K) -> R | None:
        return self._records.get(key)

    def __contains__(self, key: object) -> bool:
        return key in self._records

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[K]:
        return iter(self._records)

    def on_forget(self, callback: Callable[[K], None]) -> None:
        """Also call `callback(key)` when a key is forgotten (state kept elsewhere, e.g. writes under way)."""
        self._on_forget.append(callback)

    def forget(self, key: K) -> R | None:
        """Drops everything remembered of the key; returns the record it had."""
        record = self._records.pop(key, None)
        for callback in self._on_forget:
            callback(key)
        return record
