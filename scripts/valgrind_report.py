#!/usr/bin/env python3
"""valgrind_report.py -- sums up the worker logs of `make valgrind`; exits 1 on any error.

    python3 scripts/valgrind_report.py DIR

A log with an ERROR SUMMARY is a worker that exited normally: its errors and definitely lost
bytes must be 0. A log without one is a worker a test killed on purpose: counted only.
"""

import re
import sys
from pathlib import Path


def main(directory: str) -> int:
    logs = sorted(Path(directory).glob("worker-*.log"))
    finished = killed = bad = 0
    for log in logs:
        text = log.read_text(errors="replace")
        summary = re.search(r"ERROR SUMMARY: (\d+) errors", text)
        if summary is None:
            killed += 1
            continue
        finished += 1
        lost = re.search(r"definitely lost: ([\d,]+) bytes", text)
        lost_bytes = int(lost.group(1).replace(",", "")) if lost else 0
        if int(summary.group(1)) or lost_bytes:
            bad += 1
            print(f"{log}: {summary.group(1)} errors, {lost_bytes} bytes definitely lost")
            print(text[-4000:])
    print(f"valgrind: {len(logs)} workers, {finished} exited normally, {killed} killed by "
          f"their test; {bad} with errors or definite leaks")
    return 1 if bad or not finished else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
