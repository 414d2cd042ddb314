"""progress.py -- progress for the scripts users wait on (bench.py and its sections, demo.py).

A Progress counts steps toward a total that each part of a run announces (`expect`, by part:
announcing a part again replaces its count, so a driver can announce every part up front and
each part confirm its own size when it starts). On a terminal it draws a bar on stderr:
tqdm's when tqdm is installed, else a plain one redrawn in place. When stderr is not a
terminal (a CI log) it prints one line per step with the elapsed time and an estimate of what
is left, so that the log shows where a run is and a person knows how long to wait. Messages
go through `note`, which keeps them from tearing the bar.

    progress = Progress("bench")
    progress.expect(3)
    for name in ("a", "b", "c"):
        work(name)
        progress.advance(name)
    progress.close()
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


def fmt_duration(seconds: float) -> str:
    """1h02m, 3m05s, 12s."""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def load_tqdm(stream: TextIO) -> Any:
    """tqdm's class when it is installed and `stream` is a terminal, else None."""
    if not stream.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm


class Progress:
    """Steps done out of an expected total, shown as a bar or as plain lines (see above)."""

    def __init__(self, desc: str, total: int = 0, stream: TextIO | None = None,
                 bar: bool | None = None, log_lines: bool = True) -> None:
        """bar=False: never a bar (plain lines); log_lines=False: nothing at all when stderr is
        not a terminal (for output that is read, like the demo's, rather than watched)."""
        self.desc = desc
        self.log_lines = log_lines
        self._parts: dict[str, int] = {"": total}
        self.total = total
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.started = time.monotonic()
        tqdm = load_tqdm(self.stream) if bar is not False else None
        self._bar = (tqdm(total=total, desc=desc, file=self.stream, unit="step",
                          dynamic_ncols=True, leave=True) if tqdm is not None else None)
        # Without tqdm: a bar redrawn with \r on a terminal, else a line per step.
        self._inline = self._bar is None and bar is not False and self.stream.isatty()
        self._drawn = False
        self._label = ""

    @property
    def fancy(self) -> bool:
        """True when tqdm draws the bar."""
        return self._bar is not None

    def expect(self, steps: int, part: str = "") -> None:
        """Announce `steps` for `part` of the run (replacing what that part announced before);
        steps announced without a part add up."""
        self._parts[part] = steps + (self._parts.get(part, 0) if part == "" else 0)
        self.total = max(sum(self._parts.values()), self.done)
        if self._bar is not None:
            self._bar.total = self.total
            self._bar.refresh()

    def advance(self, label: str = "", steps: int = 1) -> None:
        """Count `steps` as done; `label` says what just finished."""
        self.done += steps
        self.total = max(self.total, self.done)
        if self._bar is not None:
            self._bar.total = self.total
            if label:
                self._bar.set_postfix_str(label, refresh=False)
            self._bar.update(steps)
        elif self._inline:
            self._label = label
            self._draw()
        elif self.log_lines:
            print(f"[{self.status()}] {label}".rstrip(), file=self.stream, flush=True)

    def _draw(self) -> None:
        width = 24
        filled = width * self.done // self.total if self.total else width
        line = f"{'#' * filled}{'.' * (width - filled)} {self.status()} {self._label}"
        self.stream.write(f"\r\033[K{line[:160]}")
        self.stream.flush()
        self._drawn = True

    def _erase(self) -> None:
        if self._drawn:
            self.stream.write("\r\033[K")
            self._drawn = False

    def status(self) -> str:
        """'12/96 12%, 2m05s, ~14m40s left': the plain line's head."""
        elapsed = time.monotonic() - self.started
        percent = 100 * self.done / self.total if self.total else 100
        text = f"{self.desc} {self.done}/{self.total} {percent:3.0f}%, {fmt_duration(elapsed)}"
        if 0 < self.done < self.total:
            text += f", ~{fmt_duration(elapsed / self.done * (self.total - self.done))} left"
        return text

    def note(self, message: str) -> None:
        """Print a message on the progress stream without tearing the bar."""
        if self._bar is not None:
            self._bar.write(message, file=self.stream)
            return
        drawn = self._drawn
        self._erase()
        print(message, file=self.stream, flush=True)
        if drawn:
            self._draw()

    def close(self) -> None:
        """End the bar (the terminal line is left clean); the object may not be used again."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self._erase()
        self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
