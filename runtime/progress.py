"""A one-line progress bar on stderr, drawn only when stderr is a terminal.

    with Progress("converting weights", total=236, unit="tensors") as bar:
        for t in tensors:
            ...
            bar.advance()
"""
from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, label: str, total: int, unit: str = "", stream=None, min_interval: float = 0.1):
        self.label, self.total, self.unit = label, max(1, int(total)), unit
        self.stream = stream or sys.stderr
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.done = 0
        self._t0 = time.monotonic()
        self._last = 0.0
        self._min_interval = min_interval

    def advance(self, n: int = 1) -> None:
        self.done = min(self.total, self.done + n)
        now = time.monotonic()
        if self.enabled and (now - self._last >= self._min_interval or self.done == self.total):
            self._last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        frac = self.done / self.total
        width = 30
        fill = int(frac * width)
        bar = "#" * fill + "." * (width - fill)
        if self.unit == "MiB":
            count = f"{self.done / 2**20:.0f}/{self.total / 2**20:.0f} MiB"
        else:
            count = f"{self.done}/{self.total} {self.unit}".rstrip()
        self.stream.write(f"\r{self.label} [{bar}] {count} {now - self._t0:.0f}s")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()
            self.enabled = False

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
