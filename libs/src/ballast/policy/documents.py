"""Reading Kubernetes YAML as Gatekeeper's tools read it (sigs.k8s.io/yaml over go-yaml v2).

Timestamps stay strings (go-yaml gives strings when decoding into interface{}), `yes`/`no`/`on`/`off` are booleans as
in YAML 1.1. Empty documents are skipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

_Base: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[misc,valid-type]
    pass


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


class DocumentError(ValueError):
    """A file that is not the YAML (or the object) it should be; the message names the file."""


def load_documents(path: Path) -> list[dict[str, Any]]:
    """Every non-empty document in a YAML file; each must be a mapping."""
    try:
        documents = [d for d in yaml.load_all(path.read_text(), Loader=_Loader) if d is not None]
    except (OSError, yaml.YAMLError) as exc:
        raise DocumentError(f"{path}: {exc}") from exc
    for index, document in enumerate(documents):
        if not isinstance(document, dict):
            raise DocumentError(f"{path}: document {index + 1} is a {type(document).__name__}, not an object")
    return documents


def load_yaml(path: Path) -> Any:
    """One YAML document (a suite, say)."""
    try:
        return yaml.load(path.read_text(), Loader=_Loader)
    except (OSError, yaml.YAMLError) as exc:
        raise DocumentError(f"{path}: {exc}") from exc
