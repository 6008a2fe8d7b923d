"""Where the SLO tests find Sloth's and OpenSLO's conformance material, and Sloth's golden files as parsed YAML.

The material lives beside the repository, in `../shared/conformance` (Apache-2.0, kept out of this repository),
or in the directory `BALLAST_CONFORMANCE` names.
"""

from __future__ import annotations

import os
import re
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import yaml

CONFORMANCE = Path(
    os.environ.get("BALLAST_CONFORMANCE") or Path(__file__).resolve().parents[3] / "shared" / "conformance"
)
SLOTH = CONFORMANCE / "sloth"
OPENSLO_EXAMPLES = CONFORMANCE / "openslo" / "examples"
VERSION = version("ballast-libs")


def conformance_file(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"{path} is missing: set BALLAST_CONFORMANCE to the conformance directory", pytrace=False)
    return path


def sloth_golden(name: str) -> list[Any]:
    """`out-<name>.yaml.tpl` rendered as Sloth's test does (version in, `{{"{{$labels.x}}"}}` unescaped), parsed."""
    text = conformance_file(SLOTH / f"out-{name}.yaml.tpl").read_text().replace("{{ .version }}", VERSION)
    text = re.sub(r'\{\{"(\{\{\$labels\.\w+\}\})"\}\}', r"\1", text)
    return [document for document in yaml.safe_load_all(text) if document is not None]


def rule_groups(text: str) -> list[Any]:
    """The rule groups of every YAML document in `text`, in order: Sloth writes a document per spec, Ballast one."""
    return [group for document in yaml.safe_load_all(text) if document is not None for group in document["groups"]]
