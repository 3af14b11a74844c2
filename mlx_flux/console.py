"""Progress on the terminal, shared by the command line and its distributed runs."""

from __future__ import annotations

import sys


class StatusLine:
    """Progress on stderr: one rewritten line on a terminal, plain lines in a log."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self._last = ""

    def _write(self, text: str, end: str = "\r") -> None:
        if self.quiet:
            return
        if not self.tty:
            end = "\n"
        pad = max(0, len(self._last) - len(text))
        sys.stderr.write(text + " " * pad + end)
        sys.stderr.flush()
        self._last = "" if end == "\n" else text

    def clear(self) -> None:
        """Erase a pending transient line, so what follows (an error, say) starts clean."""
        if self._last:
            sys.stderr.write("\r" + " " * len(self._last) + "\r")
            sys.stderr.flush()
            self._last = ""

    def loading(self, message: str, fraction: float | None) -> None:
        pct = f" {fraction * 100:5.1f}%" if fraction is not None and fraction < 1 else ""
        self._write(f"{message}{pct}")

    def done_loading(self, seconds: float) -> None:
        self._write(f"Model loaded in {seconds:.1f}s", end="\n")

    def step(self, event) -> None:
        width = 24
        filled = round(width * event.step / event.total)
        rate = event.elapsed / event.step
        left = rate * (event.total - event.step)
        self._write(f"step {event.step}/{event.total} [{'#' * filled}{'.' * (width - filled)}] "
                    f"{event.elapsed:.1f}s, {rate:.2f}s/step, {left:.0f}s left",
                    end="\n" if event.step == event.total else "\r")
