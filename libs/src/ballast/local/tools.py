"""Where `make tools` (scripts/build-tools.sh) put the binaries built from the Go module proxy.

The script builds into `$BALLAST_CACHE/tools/<go version>/bin` (BALLAST_CACHE defaults to
`${XDG_CACHE_HOME:-$HOME/.cache}/ballast`); `BALLAST_TOOLS_BIN` points somewhere else instead.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

TOOLS_BIN_ENV = "BALLAST_TOOLS_BIN"


class ToolsMissing(FileNotFoundError):
    """A binary the tests or the local cluster need has not been built; the message says how to build it."""


def cache_root() -> Path:
    explicit = os.environ.get("BALLAST_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "ballast"


@functools.cache  # one toolchain per process; `tool()` is called once per binary
def _go_version() -> str | None:
    go = shutil.which("go")
    if go is None:
        return None
    done = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=False)
    return done.stdout.strip() or None


def tools_bin_dir() -> Path:
    """The directory holding the built binaries (it may not exist yet: `tool()` says what to do then)."""
    explicit = os.environ.get(TOOLS_BIN_ENV)
    if explicit:
        return Path(explicit)
    tools = cache_root() / "tools"
    go_version = _go_version()
    if go_version is not None:
        return tools / go_version / "bin"
    # Without a Go toolchain on PATH the binaries of the most recent build are the ones to use.
    built = sorted(tools.glob("*/bin"), key=lambda p: p.stat().st_mtime)
    return built[-1] if built else tools / "unknown-go" / "bin"


def _missing(what: str, where: Path) -> ToolsMissing:
    return ToolsMissing(
        f"{what} not found in {where}: run `make tools` to build the tools from the Go module proxy "
        f"(or set {TOOLS_BIN_ENV} to a directory that has them)"
    )


def tool(name: str) -> Path:
    """The path of one built binary (`kube-apiserver`, `etcd`, `kwok`, `opa`, `helm`, `promtool`, `prometheus`,
    `alertmanager`, ...)."""
    path = tools_bin_dir() / name
    if not os.access(path, os.X_OK):
        raise _missing(name, path.parent)
    return path


def kwok_stages() -> Path:
    """The kwok stage definitions (node initialise/heartbeat, pod ready/complete/delete) the script writes."""
    path = tools_bin_dir().parent / "kwok-stages.yaml"
    if not path.is_file() or path.stat().st_size == 0:
        raise _missing("kwok-stages.yaml", path.parent)
    return path
