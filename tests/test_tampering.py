"""A hostile client (tests/c/tamper_client.c, speaking the protocol itself) abuses its own seat
and memory on a named pool while a well-behaved client keeps calling: the worker survives
with its pid unchanged, the well-behaved client sees 0 errors and only right results, and the
pool serves new clients afterwards.

The abuses: garbage over its slots and seat fields; valid big requests whose fields a second
thread rewrites while the worker runs them; semaphores posted without cause (its own and every
other seat's); a completion socket whose buffer it filled and made blocking (pool threads
signal it and must never wait on it); and its arena truncated to 0 under a running request,
which makes the worker's kernel touch pages that no longer exist (SIGBUS: the request must fail
alone, with SA_EFAULT).
"""

import subprocess

import pytest

import shmaccel

from conftest import ROOT, pool_status, wait_until

TAMPER_CLIENT = ROOT / "build" / "tests" / "tamper_client"
TAMPER_SECONDS = 3.0

# argv: pool name. Calls until told to stop (a line on stdin), checking every result; prints
# READY once it has made calls, then SUMMARY calls=N errors=N wrong=N.
GOOD_CLIENT = r"""
import sys, threading
import shmaccel

pool = shmaccel.Pool(sys.argv[1])
data = pool.array([float(i) for i in range(5000)])
big = pool.array([float(i % 97) for i in range(300_000)])
want_small = [float(i) * float(i) for i in range(5000)]
want_big = [2.0 * (i % 97) for i in range(300_000)]
stop = threading.Event()
counts = {"calls": 0, "errors": 0, "wrong": 0}

def loop():
    while not stop.is_set():
        try:
            if pool.square(data, timeout=30).tolist() != want_small:
                counts["wrong"] += 1
            if pool.double(big, timeout=30).tolist() != want_big:
                counts["wrong"] += 1
        except Exception as e:
            print("ERROR", type(e).__name__, e, flush=True)
            counts["errors"] += 1
        counts["calls"] += 2

thread = threading.Thread(target=loop)
thread.start()
while counts["calls"] < 20:
    pass
print("READY", flush=True)
sys.stdin.readline()
stop.set()
thread.join()
print(f"SUMMARY calls={counts['calls']} errors={counts['errors']} wrong={counts['wrong']}",
      flush=True)
"""


def fields(line):
    return {k: int(v) for k, v in (item.split("=", 1) for item in line.split()[2:])}


@pytest.mark.parametrize("mode", ["garbage", "hammer", "posts", "notify", "truncate"])
def test_worker_and_neighbour_survive_a_tampering_client(cli_pool, children, mode):
    assert TAMPER_CLIENT.exists(), "build it with: make build/tests/tamper_client"
    socket_path = shmaccel._shmaccel.pool_socket_path(cli_pool.name)
    good = children.python(GOOD_CLIENT, cli_pool.name, stdin=True)
    good.expect("READY", timeout=60)

    tamper = subprocess.run(
        [str(TAMPER_CLIENT), socket_path, mode, str(TAMPER_SECONDS)],
        capture_output=True, text=True, timeout=120)
    assert tamper.returncode == 0, tamper.stderr + cli_pool.log()
    report = tamper.stdout.strip().splitlines()[-1]
    assert report.startswith(f"tamper {mode}:"), tamper.stdout

    good.send("\n")
    summary = good.expect("SUMMARY", timeout=60)
    assert good.finish(timeout=30) == 0, good.transcript()
    figures = {k: int(v) for k, v in (item.split("=") for item in summary.split()[1:])}
    assert figures["errors"] == 0 and figures["wrong"] == 0, good.transcript()
    assert figures["calls"] > 20

    # The worker is the same process, and serves a newcomer.
    status = pool_status(cli_pool.name)
    assert status["worker_pid"] == cli_pool.pid, cli_pool.log()
    with shmaccel.Pool(cli_pool.name) as newcomer:
        assert newcomer.worker_pid == cli_pool.pid
        assert newcomer.square([1.5, -2.0]) == [2.25, 4.0]
    assert wait_until(lambda: pool_status(cli_pool.name)["clients"] == 0, 10), cli_pool.log()

    if mode == "notify":
        # Its requests asked for a signal on a socket that can take no more: they completed
        # all the same, and no pool thread was left blocked on the signal.
        got = fields(report)
        assert got["filled"] > 0 and got["submitted"] > 0, report
        assert got["stuck"] == 0 and got["done"] == got["submitted"], report
    if mode == "truncate":
        got = fields(report)
        # The control segment is sealed: the hostile client cannot resize it.
        assert got["ctl_shrink_errno"] != 0 and got["ctl_grow_errno"] != 0, report
        # Requests whose memory vanished failed alone, with SA_EFAULT; none hung.
        assert got["rounds"] > 0 and got["stuck"] == 0, report
        assert got["efault"] > 0, report
