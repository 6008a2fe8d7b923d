"""Progress of a long run on stderr (count, rate, ETA), and Ctrl-C as a request to stop at the next message.

The count is kept by `advance`, which only adds; the clock is looked at once every `check_every` messages, so that a
run of a hundred thousand messages a second pays almost nothing for being watched. On a terminal the line is
redrawn in place; elsewhere (a CI log) one line is written every `log_every` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Iterator
from typing import TextIO


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    def __init__(
        self,
        label: str,
        total: int | None = None,
        *,
        out: TextIO | None = None,
        check_every: int = 2048,
        redraw_every: float = 0.5,
        log_every: float = 10.0,
        enabled: bool = True,
    ) -> None:
        self.label = label
        self.total = total
        self.count = 0
        self._out = out or sys.stderr
        self._tty = self._out.isatty()
        self._check_every = check_every
        self._interval = redraw_every if self._tty else log_every
        self._enabled = enabled
        self._next_check = check_every
        self.started = time.monotonic()
        self._last_draw = self.started

    def advance(self, n: int = 1) -> None:
        self.count += n
        if self.count >= self._next_check:
            self._next_check = self.count + self._check_every
            now = time.monotonic()
            if now - self._last_draw >= self._interval:
                self._last_draw = now
                self._draw(now)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def rate(self) -> float:
        elapsed = self.elapsed
        return self.count / elapsed if elapsed > 0 else 0.0

    def line(self, now: float | None = None) -> str:
        elapsed = (now or time.monotonic()) - self.started
        rate = self.count / elapsed if elapsed > 0 else 0.0
        text = f"{self.label}: {self.count:,}"
        if self.total:
            text += f"/{self.total:,} ({100 * self.count / self.total:.0f}%)"
        text += f" {rate:,.0f}/s elapsed {_clock(elapsed)}"
        if self.total and rate > 0 and self.count < self.total:
            text += f" ETA {_clock((self.total - self.count) / rate)}"
        return text

    def _draw(self, now: float) -> None:
        if not self._enabled:
            return
        if self._tty:
            self._out.write("\r\x1b[2K" + self.line(now))
        else:
            self._out.write(self.line(now) + "\n")
        self._out.flush()

    def finish(self) -> None:
        """The final line (always written, on its own line)."""
        if not self._enabled:
            return
        if self._tty:
            self._out.write("\r\x1b[2K")
        self._out.write(self.line() + "\n")
        self._out.flush()


class Stop:
    """Set on the first Ctrl-C (SIGINT) or SIGTERM inside `catching()`: loops check `requested` between messages and
    end cleanly, saying where to resume. A second Ctrl-C is left to Python (KeyboardInterrupt)."""

    def __init__(self) -> None:
        self.requested = False
        self.event = asyncio.Event()  # for waits that no message would end (a quiet tail)

    def request(self) -> None:
        self.requested = True
        self.event.set()

    @contextlib.contextmanager
    def catching(self) -> Iterator[Stop]:
        loop = asyncio.get_running_loop()

        def on_signal() -> None:
            if self.requested:
                loop.remove_signal_handler(signal.SIGINT)
                signal.raise_signal(signal.SIGINT)  # asked twice: stop now
                return
            self.request()
            print("\nstopping after the current message (Ctrl-C again to abort)", file=sys.stderr)

        installed = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, on_signal)
                installed.append(sig)
            except (NotImplementedError, RuntimeError):  # not the main thread (tests): no handler, no stop
                pass
        try:
            yield self
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
