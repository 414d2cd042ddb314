"""Progress where users wait (scripts/progress.py): plain lines with the time left in a log, a
bar redrawn in place on a real terminal (tqdm's when installed, else its own), and the demo
showing its bar on a terminal while its report stays clean."""

import fcntl
import io
import os
import re
import struct
import subprocess
import sys
import termios

import pytest

from conftest import ROOT, child_env

sys.path.insert(0, str(ROOT / "scripts"))
import progress as progress_mod  # noqa: E402  (scripts/ is not a package)
from progress import Progress  # noqa: E402


class Terminal:
    """A real pseudo-terminal: what a Progress writes to its slave end is read back from the
    master end."""

    def __init__(self):
        self.master, slave = os.openpty()
        # A terminal window of 120 x 40 (a new pty has 0 columns: bars would be empty).
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        self.stream = os.fdopen(slave, "w", buffering=1)

    def output(self):
        self.stream.flush()
        os.set_blocking(self.master, False)
        chunks = []
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks).decode()

    def close(self):
        self.stream.close()
        os.close(self.master)


@pytest.fixture
def terminal():
    term = Terminal()
    yield term
    term.close()


def test_a_log_gets_one_line_per_step_with_counts_and_time_left():
    log = io.StringIO()
    progress = Progress("bench", stream=log)
    progress.expect(4)
    for label in ("pingpong", "numpy", "lists"):
        progress.advance(label)
    progress.note("a message")
    progress.expect(2)
    progress.advance("sizes")
    progress.close()
    lines = log.getvalue().splitlines()
    assert re.fullmatch(r"\[bench 1/4  25%, \d+s, ~\d+s left\] pingpong", lines[0]), lines
    assert lines[2].startswith("[bench 3/4  75%") and lines[2].endswith("lists")
    assert lines[3] == "a message"
    assert lines[4].startswith("[bench 4/6  67%")  # the total grew as a section announced it
    assert "\r" not in log.getvalue()


def test_a_log_gets_nothing_when_asked_for_terminal_only_progress():
    log = io.StringIO()
    with Progress("timing", total=2, stream=log, log_lines=False) as progress:
        progress.advance("one")
        progress.note("kept")
        progress.advance("two")
    assert log.getvalue() == "kept\n"


def test_a_terminal_without_tqdm_gets_a_bar_redrawn_in_place(terminal, monkeypatch):
    monkeypatch.setattr(progress_mod, "load_tqdm", lambda stream: None)  # as if not installed
    with Progress("bench", total=4, stream=terminal.stream) as progress:
        assert not progress.fancy
        progress.advance("first")
        progress.note("between")
        progress.advance("second")
    out = terminal.output()
    assert "\r\x1b[K######" in out and "bench 1/4  25%" in out and "bench 2/4  50%" in out
    assert "between\r\n" in out  # the message on its own line, the bar redrawn after it
    assert out.endswith("\r\x1b[K")  # closing leaves the line clean
    assert "\n[bench" not in out  # no log lines on a terminal


def test_a_terminal_with_tqdm_gets_tqdms_bar(terminal):
    pytest.importorskip("tqdm")
    with Progress("bench", total=3, stream=terminal.stream) as progress:
        assert progress.fancy
        for label in ("a", "b", "c"):
            progress.advance(label)
    out = terminal.output()
    assert "bench: 100%" in out and "3/3" in out


def test_demo_draws_its_bar_on_a_terminal_and_keeps_its_report_clean(terminal):
    # The demo's stderr is the terminal; its stdout (the report) is a pipe.
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "demo.py")],
                            stdout=subprocess.PIPE, stderr=terminal.stream, text=True,
                            env=child_env(), timeout=300)
    assert result.returncode == 0
    bar = terminal.output()
    assert "timing" in bar and ("5/5" in bar or "4/4" in bar), bar
    assert "plain Python loop" in result.stdout
    assert "\r" not in result.stdout and "timing" not in result.stdout


def test_demo_prints_no_progress_into_a_log():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "demo.py")],
                            capture_output=True, text=True, env=child_env(), timeout=300)
    assert result.returncode == 0, result.stderr
    assert "timing" not in result.stderr and "%" not in result.stderr, result.stderr


def test_bench_counts_its_steps_to_the_announced_total_in_a_log(tmp_path):
    # The steady section alone (quick): its steps are announced up front, so the first line
    # already shows the run's real total, and the last one reaches it.
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench.py"), "--quick", "--only", "steady",
         "--json", str(tmp_path / "bench.json")],
        capture_output=True, text=True, env=child_env(), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("[bench ")]
    counts = [re.match(r"\[bench (\d+)/(\d+) ", line).groups() for line in lines]
    assert counts == [("1", "3"), ("2", "3"), ("3", "3")], lines
    assert "[bench" not in result.stdout
