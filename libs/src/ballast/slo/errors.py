"""Errors in SLO documents, each naming the file, the document in it, the field and the rule it breaks."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pydantic import ValidationError


@dataclass(frozen=True)
class SpecError:
    file: str
    document: int  # 1-based position in the file's YAML stream
    field: str  # dotted path as the document spells it, e.g. slos[1].objective; "" for the document itself
    rule: str

    def __str__(self) -> str:
        where = f"{self.file}: document {self.document}"
        return f"{where}: {self.field}: {self.rule}" if self.field else f"{where}: {self.rule}"


class InvalidSpec(ValueError):
    """One or more documents break the rules; `errors` lists every one found."""

    def __init__(self, errors: Sequence[SpecError]) -> None:
        self.errors = tuple(errors)
        super().__init__("\n".join(map(str, self.errors)))


def field_path(location: Iterable[int | str], prefix: str = "") -> str:
    path = prefix
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path


def from_validation(
    error: ValidationError, file: str, document: int, prefix: str = "", spelled: dict[str, str] | None = None
) -> list[SpecError]:
    """pydantic's errors as SpecErrors; `spelled` maps field names to the document's spelling (camelCase kinds)."""
    rename = spelled or {}
    found = []
    for detail in error.errors(include_url=False):
        # Unions and discriminated models add the member's tag to the path; the document never spells it.
        location = [rename.get(part, part) if isinstance(part, str) else part for part in detail["loc"]]
        message = detail["msg"].removeprefix("Value error, ")
        found.append(SpecError(file, document, field_path(location, prefix), message))
    return found
