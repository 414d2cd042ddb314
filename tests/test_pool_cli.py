"""scripts/shmaccel-pool as a user types it: start, stop, status, list; names; stale pools
after kill -9; sharing a pool between processes; a graceful stop with calls in flight."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading

import pytest

import shmaccel

from conftest import ROOT, child_env, pid_exists, runtime_dir, unique_name, wait_until

CLI = ROOT / "scripts" / "shmaccel-pool"


def cli(*args, timeout=30):
    return subprocess.run([sys.executable, str(CLI), *args], capture_output=True, text=True,
                          timeout=timeout, env=child_env())


@pytest.fixture
def pool_name(tmp_path):
    """A fresh pool name; whatever pool holds it at the end is killed and its files removed."""
    name = unique_name("clitest")
    yield name
    path = runtime_dir() / f"{name}.sock"
    result = cli("status", name, "--json")
    if result.returncode == 0:
        for row in json.loads(result.stdout):
            pid = row["worker_pid"]
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            wait_until(lambda pid=pid: not pid_exists(pid), 5)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def start(name, tmp_path, *extra):
    result = cli("start", name, "--log", str(tmp_path / f"{name}.log"), *extra)
    assert result.returncode == 0, result.stderr
    return int(result.stdout.strip())


def test_start_prints_pid_and_pool_accepts_clients_at_once(pool_name, tmp_path):
    pid = start(pool_name, tmp_path, "--threads", "2")
    assert pid_exists(pid)
    with shmaccel.Pool(pool_name) as pool:  # no retry: start returned only once it accepts
        assert pool.worker_pid == pid
        assert pool.threads == 2
        assert pool.square([1, 2, 3]) == [1, 4, 9]
    assert cli("stop", pool_name).returncode == 0
    assert wait_until(lambda: not pid_exists(pid), 5)


def test_start_of_a_live_name_fails_with_status_1(pool_name, tmp_path):
    pid = start(pool_name, tmp_path)
    second = cli("start", pool_name, "--log", str(tmp_path / "second.log"))
    assert second.returncode == 1
    assert "already running" in second.stderr and str(pid) in second.stderr
    with shmaccel.Pool(pool_name) as pool:
        assert pool.worker_pid == pid  # the first pool is untouched


@pytest.mark.parametrize("option", ["--threads", "--max-clients"])
@pytest.mark.parametrize("value", ["0", "1025", "2000", "two"])
def test_start_with_counts_beyond_the_worker_limits_exits_2_and_starts_nothing(
        option, value, pool_name, tmp_path):
    result = cli("start", pool_name, option, value, "--log", str(tmp_path / "log"))
    assert result.returncode == 2, result.stderr
    assert option in result.stderr and "usage" in result.stderr
    assert not (runtime_dir() / f"{pool_name}.sock").exists()
    assert not (tmp_path / "log").exists()


@pytest.mark.parametrize("bad", ["../x", "/", "", "a/b", ".hidden", "x" * 65, "sp ace"])
def test_invalid_names_exit_2_before_touching_any_file(bad, tmp_path):
    before = set(os.listdir(runtime_dir())) if runtime_dir().exists() else set()
    for args in (["start", bad, "--log", str(tmp_path / "l")], ["stop", bad], ["status", bad]):
        result = cli(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert "invalid pool name" in result.stderr
    after = set(os.listdir(runtime_dir())) if runtime_dir().exists() else set()
    # Other pools may come and go meanwhile; nothing named after the bad name may appear.
    suspicious = {e for e in after - before if e.startswith(".") or (bad and bad in e)}
    assert suspicious == set()
    assert not (tmp_path / "l").exists()


def test_invalid_name_is_value_error_in_python():
    for bad in ("../x", "/", "", "a\0b", ".x"):
        with pytest.raises(ValueError):
            shmaccel.Pool(bad)


def test_stale_pool_after_kill_9_is_replaced_by_start(pool_name, tmp_path):
    old = start(pool_name, tmp_path)
    os.kill(old, signal.SIGKILL)
    assert wait_until(lambda: not pid_exists(old) or open(f"/proc/{old}/stat").read()
                      .rsplit(")", 1)[1].split()[0] == "Z", 5)
    assert (runtime_dir() / f"{pool_name}.sock").exists()  # left behind by kill -9
    assert pool_name not in cli("list").stdout.split()
    with pytest.raises(shmaccel.PoolNotFoundError):
        shmaccel.Pool(pool_name)
    new = start(pool_name, tmp_path)
    assert new != old
    with shmaccel.Pool(pool_name) as pool:
        assert pool.worker_pid == new
        assert pool.double([4]) == [8]


def test_status_and_list_show_live_pools(pool_name, tmp_path):
    pid = start(pool_name, tmp_path, "--threads", "1")
    with shmaccel.Pool(pool_name) as pool:
        pool.square(list(range(100)))
        listed = cli("list")
        assert listed.returncode == 0 and pool_name in listed.stdout.split()
        table = cli("status")
        assert table.returncode == 0
        assert "BUSY%" in table.stdout.splitlines()[0]
        row = next(line for line in table.stdout.splitlines() if line.startswith(pool_name))
        assert str(pid) in row.split()
        data = json.loads(cli("status", pool_name, "--json").stdout)
    assert len(data) == 1
    row = data[0]
    assert row["name"] == pool_name and row["worker_pid"] == pid and row["threads"] == 1
    assert row["clients"] == 1  # our Pool; the status query itself is not counted
    assert row["requests"] >= 1 and row["elements"] >= 100 and row["errors"] == 0
    assert 0.0 <= row["busy_pct"] <= 100.0 and row["uptime_s"] > 0


def test_stop_and_status_of_unknown_pool_fail_with_status_1():
    name = unique_name("nosuchpool")
    assert cli("stop", name).returncode == 1
    result = cli("status", name)
    assert result.returncode == 1 and name in result.stderr


def test_pool_not_found_names_the_pool_and_how_to_start_it():
    name = unique_name("nosuchpool")
    with pytest.raises(shmaccel.PoolNotFoundError) as info:
        shmaccel.Pool(name)
    assert isinstance(info.value, FileNotFoundError)
    assert name in str(info.value) and "shmaccel-pool start" in str(info.value)


def test_two_processes_share_one_pool(pool_name, tmp_path, children):
    pid = start(pool_name, tmp_path)
    code = (
        "import os, shmaccel\n"
        "p = shmaccel.default_pool()\n"
        "assert shmaccel.square([7]) == [49]\n"
        "print(p.worker_pid, os.getpid(), flush=True)\n"
        "input()\n"
    )
    env = {"SHMACCEL_POOL": pool_name}
    first = children.python(code, env=env, stdin=True)
    second = children.python(code, env=env, stdin=True)
    lines = [first.readline(10).split(), second.readline(10).split()]
    assert [int(line[0]) for line in lines] == [pid, pid]
    status = json.loads(cli("status", pool_name, "--json").stdout)[0]
    assert status["clients"] == 2
    # Per-client figures: each child's own session, with its one request of one element.
    sessions = {s["pid"]: s for s in status["sessions"]}
    for line in lines:
        session = sessions[int(line[1])]
        assert (session["requests"], session["elements"], session["in_flight"]) == (1, 1, 0)


def test_graceful_stop_finishes_calls_in_flight_then_refuses(pool_name, tmp_path):
    start(pool_name, tmp_path, "--threads", "1")
    pool = shmaccel.Pool(pool_name)
    data = pool.array([1.5] * 4_000_000, dtype="float64")  # 2**200 stays exact
    outcome = {}

    def long_calls():
        try:
            for _ in range(200):  # until the stop: every call either completes or is refused
                pool.double(data, out=data)
                outcome["completed"] = outcome.get("completed", 0) + 1
        except shmaccel.PoolClosedError:
            outcome["refused"] = True
        except Exception as e:
            outcome["error"] = repr(e)

    thread = threading.Thread(target=long_calls)
    thread.start()
    assert wait_until(lambda: outcome.get("completed", 0) >= 2, 10)
    stop = cli("stop", pool_name, "--timeout", "10")
    thread.join(30)
    assert stop.returncode == 0, stop.stderr
    assert "error" not in outcome, outcome
    assert outcome.get("refused") or outcome.get("completed") == 200
    # Every completed call doubled the data exactly once: nothing was lost or repeated.
    assert data[0] == 1.5 * 2 ** outcome["completed"]
    with pytest.raises(shmaccel.PoolClosedError):
        pool.square([1])
    with pytest.raises(shmaccel.PoolNotFoundError):
        shmaccel.Pool(pool_name)
    assert not (runtime_dir() / f"{pool_name}.sock").exists()
    pool.close()


def test_futures_settle_when_stop_has_to_kill_the_pool(pool_name, tmp_path):
    """stop --timeout kills a pool that cannot finish in time: every future still pending
    must end with an error, not wait forever. The seats are flagged stopping before the
    worker dies, which must not hide the hang-up from the waiting requests."""
    start(pool_name, tmp_path, "--threads", "1")
    pool = shmaccel.Pool(pool_name)
    data = pool.zeros(20_000_000)
    futures = [pool.submit("square", data, out=data) for _ in range(60)]
    # Stopped, the worker cannot finish them in 0.2 s however fast this machine is (a faster
    # one once finished all 60 calls in time, and the stop was a graceful one).
    os.kill(pool.worker_pid, signal.SIGSTOP)
    result = cli("stop", pool_name, "--timeout", "0.2")
    assert "killed" in result.stderr
    for future in futures:
        error = future.exception(timeout=10)
        assert error is None or isinstance(error, shmaccel.Error)
    assert any(f.exception() is not None for f in futures)
    pool.close()


def test_status_watch_refreshes_with_rates_while_a_client_works(pool_name, tmp_path):
    """status --watch: one table per refresh, the second and later with the request rate
    since the one before; the rate reflects a client working meanwhile."""
    start(pool_name, tmp_path, "--threads", "1")
    stop = threading.Event()
    calls = [0]

    def client():
        with shmaccel.Pool(pool_name) as pool:
            while not stop.is_set():
                assert pool.square([1, 2, 3]) == [1, 4, 9]
                calls[0] += 1

    worker = threading.Thread(target=client)
    worker.start()
    try:
        assert wait_until(lambda: calls[0] > 0, 30), "the client never made a call"
        result = cli("status", pool_name, "--watch", "0.3", "--count", "3", "--json")
    finally:
        stop.set()
        worker.join()
    assert result.returncode == 0, result.stderr
    refreshes = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(refreshes) == 3
    requests = [rows[0]["requests"] for rows in refreshes]
    # Live figures, not one snapshot. (Not necessarily a rise at every refresh: a loaded
    # machine may give the client no CPU for one 0.3 s interval.)
    assert requests == sorted(requests) and requests[0] < requests[2], requests

    text = cli("status", pool_name, "--watch", "0.2", "--count", "2")
    assert text.returncode == 0, text.stderr
    tables = text.stdout.split("shmaccel-pool status, every 0.2 s")[1:]
    assert len(tables) == 2
    assert "REQ/S" in tables[1] and pool_name in tables[1]


def test_status_watch_waits_for_a_named_pool_and_rejects_bad_intervals(pool_name, tmp_path):
    missing = cli("status", pool_name, "--watch", "0.1", "--count", "2")
    assert missing.returncode == 0, missing.stderr
    assert missing.stdout.count(f"no pool named {pool_name!r} is running") == 2
    for bad in ("0", "-1", "nan", "soon"):
        result = cli("status", "--watch", bad, "--count", "1")
        assert result.returncode == 2 and "--watch" in result.stderr, (bad, result.stderr)
    assert cli("status", "--count", "2").returncode == 2  # --count without --watch
