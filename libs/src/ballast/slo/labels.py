"""Prometheus label names, checked where specs set labels and annotations."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def _label_names(labels: dict[str, str]) -> dict[str, str]:
    bad = [name for name in labels if not _LABEL_NAME.match(name)]
    if bad:
        raise ValueError(f"{', '.join(map(repr, bad))} is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)")
    return labels


Labels = Annotated[dict[str, str], AfterValidator(_label_names)]
