"""Reading SLO documents from files: every format the model knows, told apart by the version each declares.

All documents are read before any is rejected, so one run reports every error; openslo/v1 references are resolved
among all the files loaded together (an SLO in one file may use an SLI from another).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from ballast.slo import crd, openslo_v1, openslo_v1alpha, sloth
from ballast.slo.errors import InvalidSpec, SpecError
from ballast.slo.group import SloGroup

_FORMATS = (
    "version prometheus/v1 (Sloth), apiVersion sloth.slok.dev/v1 kind PrometheusServiceLevel, "
    "openslo/v1alpha kind SLO, openslo/v1, or platform.example.com/v1 kind ServiceLevelObjective"
)


@dataclass
class Loaded:
    groups: list[SloGroup] = field(default_factory=list)
    errors: list[SpecError] = field(default_factory=list)


def spec_files(path: Path) -> list[Path]:
    """`path` itself, or every .yaml/.yml file under it (sorted, so runs are repeatable)."""
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in (".yaml", ".yml"))
    return [path]


def _documents(text: str, file: str, loaded: Loaded) -> Iterable[tuple[int, Any]]:
    index = 0
    try:
        for index, document in enumerate(yaml.safe_load_all(text), start=1):
            if document is not None:
                yield index, document
    except yaml.YAMLError as error:
        loaded.errors.append(SpecError(file, index + 1, "", f"not valid YAML: {error}"))


def _load_document(
    data: Any, file: str, document: int, period: timedelta, v1: list[openslo_v1.V1Document]
) -> SloGroup | None:
    if not isinstance(data, dict):
        raise InvalidSpec([SpecError(file, document, "", f"expected a mapping: {_FORMATS}")])
    api_version, kind = data.get("apiVersion"), data.get("kind")
    if data.get("version") == "prometheus/v1":
        return sloth.load_prometheus_v1(data, file, document, period)
    if api_version == "sloth.slok.dev/v1" and kind == "PrometheusServiceLevel":
        return sloth.load_prometheus_service_level(data, file, document, period)
    if api_version == "openslo/v1alpha" and kind == "SLO":
        return openslo_v1alpha.load_v1alpha(data, file, document, period)
    if api_version == "openslo/v1alpha" and kind == "Service":
        return None  # Sloth reads services from the SLOs themselves
    if api_version == "openslo/v1":
        v1.append(openslo_v1.parse_v1(data, file, document))
        return None
    if api_version == crd.API_VERSION and kind == crd.KIND:
        return crd.load_object(data, file, document)
    found = f"version {data.get('version')!r}" if "version" in data else f"apiVersion {api_version!r} kind {kind!r}"
    raise InvalidSpec([SpecError(file, document, "", f"{found} is not an SLO spec: expected {_FORMATS}")])


def load_texts(texts: Iterable[tuple[str, str]], period: timedelta) -> Loaded:
    """(file name, YAML text) pairs into SLO groups and errors; `period` is the rolling window Sloth specs get."""
    loaded = Loaded()
    v1: list[openslo_v1.V1Document] = []
    order: dict[str, int] = {}
    for file, text in texts:
        order.setdefault(file, len(order))
        for document, data in _documents(text, file, loaded):
            try:
                group = _load_document(data, file, document, period, v1)
            except InvalidSpec as invalid:
                loaded.errors.extend(invalid.errors)
                continue
            if group is not None:
                loaded.groups.append(group)
    groups, errors = openslo_v1.resolve_v1(v1)
    loaded.groups.extend(groups)
    loaded.errors.extend(errors)
    loaded.groups.sort(key=lambda g: (order[g.file], g.document))  # v1 SLOs back in the order they were read
    return loaded


def load_paths(paths: Iterable[Path], period: timedelta) -> Loaded:
    files = [file for path in paths for file in spec_files(path)]
    return load_texts(((str(file), file.read_text()) for file in files), period)
