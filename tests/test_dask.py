"""shmaccel.dask: dask arrays computed block by block by the shmaccel pool of each Dask worker
process, on a real LocalCluster of worker processes: results equal numpy's, a named pool set by
SHMACCEL_POOL serves every block, and nothing is left once the cluster closes.

Skipped when dask or distributed is missing (the test extra installs them)."""

import array
import contextlib
import os

import pytest

import shmaccel

from conftest import (
    DTYPE_BY_NAME,
    DTYPE_NAMES,
    OPS,
    all_procs,
    assert_matches,
    is_descendant,
    is_worker,
    make_case,
    running,
    shm_entries,
    wait_until,
)

INSTALL = 'pip install "dask[array,distributed]"'
np = pytest.importorskip("numpy", reason="shmaccel.dask needs numpy")
da = pytest.importorskip(
    "dask.array", reason=f"dask.array is not installed ({INSTALL})"
)
distributed = pytest.importorskip(
    "distributed", reason=f"dask.distributed is not installed ({INSTALL})"
)

# Not at the top: without dask it raises ImportError, and the module is to be skipped instead.
import shmaccel.dask  # noqa: E402

N = 10**7
BLOCKS = 8


def start_cluster(env=None):
    """A LocalCluster of 2 worker processes (2 threads each) and a Client on it. Each worker's
    private pool (or its session with $SHMACCEL_POOL) is opened here, before the test runs."""
    cluster = distributed.LocalCluster(
        n_workers=2,
        processes=True,
        threads_per_worker=2,
        dashboard_address="127.0.0.1:0",
        env=env or {},
    )
    client = distributed.Client(cluster)
    client.run(shmaccel.double, [1.0])
    return cluster, client


def close_cluster(cluster, client):
    client.close()
    cluster.close()


@contextlib.contextmanager
def local_cluster(env=None):
    cluster, client = start_cluster(env)
    try:
        yield client
    finally:
        close_cluster(cluster, client)


@pytest.fixture(scope="module")
def client():
    """One cluster for the correctness tests: its workers' private pools start in setup, so
    they precede each test's check for leftover workers; they end with the cluster."""
    with local_cluster() as client:
        yield client


def worker_pids(client):
    return set(client.run(os.getpid).values())


def shmaccel_workers_under(pids):
    """{dask worker pid: [shmaccel-worker pids descended from it]}."""
    procs = all_procs()
    found = {pid: [] for pid in pids}
    for proc in procs.values():
        if is_worker(proc):
            for pid in pids:
                if is_descendant(proc.pid, procs, ancestor=pid):
                    found[pid].append(proc.pid)
    return found


def source(xp, dtype, **chunks):
    """N varied elements of dtype, built by the same numpy arithmetic whether xp is numpy or
    dask.array: negatives, large magnitudes, and squares (and doubles) that wrap around."""
    i = xp.arange(N, dtype="int64", **chunks)
    if dtype == "float64":
        return (i - N // 2) * 0.3713
    mixed = i * np.int64(-0x61C8864680B583EB)  # wraps: values spread over all of int64
    return mixed if dtype == "int64" else mixed.astype(dtype)


@pytest.mark.parametrize("dtype", ["float64", "int64", "int32"])
def test_square_and_double_on_a_local_cluster_equal_numpy(client, dtype):
    darr = source(da, dtype, chunks=N // BLOCKS)
    assert darr.numblocks == (BLOCKS,)
    squared, doubled = shmaccel.dask.square(darr), shmaccel.dask.double(darr)
    for lazy in (squared, doubled):
        assert isinstance(lazy, da.Array)
        assert lazy.dtype == np.dtype(dtype)
        assert lazy.chunks == darr.chunks

    got_square, got_double = client.compute([squared, doubled], sync=True)
    x = source(np, dtype)
    for got, want in ((got_square, x * x), (got_double, x * 2)):
        assert type(got) is np.ndarray
        assert got.dtype == want.dtype and got.shape == (N,)
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
@pytest.mark.parametrize("op", OPS)
def test_any_shape_and_chunking_in_the_synchronous_scheduler(op, dtype):
    dt = DTYPE_BY_NAME[dtype]
    data, expected = make_case(dt, op, 37 * 23, ("dask", op, dtype))
    x = np.frombuffer(data, dtype=dtype).reshape(37, 23)
    want = np.frombuffer(expected, dtype=dtype).reshape(37, 23)
    kernel = getattr(shmaccel.dask, op)
    # Column blocks are strided views of x.
    darr = da.from_array(x, chunks=((10, 27), (5, 5, 13)))
    cases = [
        (darr, want),
        (darr.T, want.T),
        (darr[::3, 1:], want[::3, 1:]),
        (darr[darr != 0], want[x != 0]),  # unknown (NaN) chunk sizes
        (darr[4, 7], want[4, 7]),  # 0-d
        (darr[:0], want[:0]),
    ]
    for lazy_in, wanted in cases:
        lazy = kernel(lazy_in)
        assert lazy.dtype == np.dtype(dtype)
        assert str(lazy.chunks) == str(lazy_in.chunks)  # (NaN sizes compare unequal)
        got = lazy.compute(scheduler="sync")
        assert got.shape == wanted.shape and got.dtype == wanted.dtype
        assert_matches(
            got, array.array(dt.typecode, np.ascontiguousarray(wanted).tobytes()), dt
        )


def test_building_the_graph_runs_nothing(monkeypatch):
    calls = []
    real = shmaccel.dask._apply_block

    def counting(block, **kwargs):
        calls.append(block.shape)
        return real(block, **kwargs)

    monkeypatch.setattr(shmaccel.dask, "_apply_block", counting)
    lazy = shmaccel.dask.square(da.ones((6, 6), chunks=4, dtype="uint16"), timeout=30)
    # No meta inference by calling the kernel: it would start a pool where the graph is built.
    assert calls == []
    assert lazy.name.startswith("shmaccel-square-")
    assert lazy.compute(scheduler="sync").tolist() == [[1] * 6] * 6
    assert sorted(calls) == [(2, 2), (2, 4), (4, 2), (4, 4)]


@pytest.mark.parametrize(
    "data", [np.arange(3.0), [1.0, 2.0], None], ids=["numpy", "list", "None"]
)
@pytest.mark.parametrize("op", OPS)
def test_non_dask_input_is_a_type_error(op, data):
    with pytest.raises(
        TypeError, match=rf"shmaccel\.dask\.{op}\(\) takes a dask\.array\.Array"
    ):
        getattr(shmaccel.dask, op)(data)


@pytest.mark.parametrize(
    "dtype", ["bool", "float16", "complex128", "object", ">f8", ">i4"]
)
def test_unsupported_dtype_is_a_type_error_when_the_graph_is_built(dtype):
    darr = da.from_array(np.zeros(4, dtype=dtype), chunks=2)
    with pytest.raises(TypeError, match="unsupported dtype"):
        shmaccel.dask.square(darr)


def test_non_numpy_blocks_and_bad_timeouts_are_refused_when_the_graph_is_built():
    with pytest.raises(TypeError, match="plain numpy blocks"):
        shmaccel.dask.double(da.ma.masked_equal(da.arange(4, chunks=2), 1))
    darr = da.arange(4, chunks=2)
    with pytest.raises(TypeError, match="timeout"):
        shmaccel.dask.double(darr, timeout="1")
    for bad in (-1, float("nan")):
        with pytest.raises(ValueError, match="timeout"):
            shmaccel.dask.double(darr, timeout=bad)


def test_named_pool_from_shmaccel_pool_serves_every_block(cli_pool):
    with shmaccel.Pool(cli_pool.name) as probe:
        requests_before = probe.stats()["requests"]
    with local_cluster(env={"SHMACCEL_POOL": cli_pool.name}) as client:
        pids = worker_pids(client)
        assert set(client.run(os.getenv, "SHMACCEL_POOL").values()) == {cli_pool.name}
        darr = source(da, "float64", chunks=N // BLOCKS)
        got_square, got_double = client.compute(
            [shmaccel.dask.square(darr), shmaccel.dask.double(darr)], sync=True
        )
        x = source(np, "float64")
        np.testing.assert_array_equal(got_square, x * x)
        np.testing.assert_array_equal(got_double, x * 2)

        with shmaccel.Pool(cli_pool.name) as probe:
            stats = probe.stats()
        # One session per dask worker process (opened by start_cluster's warm-up call); the
        # 2 * BLOCKS block calls and the 2 warm-ups are all the requests the pool served.
        sessions = [s for s in stats["sessions"] if s["pid"] in pids]
        assert sorted(s["pid"] for s in sessions) == sorted(pids), stats
        assert sum(s["requests"] for s in sessions) == 2 * BLOCKS + 2, stats
        assert sum(s["elements"] for s in sessions) == 2 * N + 2, stats
        assert stats["requests"] - requests_before == 2 * BLOCKS + 2, stats
        assert shmaccel_workers_under(pids) == {pid: [] for pid in pids}, (
            "a dask worker started a private shmaccel worker despite SHMACCEL_POOL"
        )
    assert running(cli_pool.pid), "the named pool exited with its dask clients"

    def dask_sessions_left():
        with shmaccel.Pool(cli_pool.name) as probe:
            return [s for s in probe.stats()["sessions"] if s["pid"] in pids]

    assert wait_until(lambda: not dask_sessions_left(), 5.0, 0.1), dask_sessions_left()


def test_closing_the_cluster_ends_every_private_worker_and_leaves_no_shm():
    shm_before = shm_entries()
    with local_cluster() as client:
        pids = worker_pids(client)
        darr = source(da, "int64", chunks=N // BLOCKS)
        total = shmaccel.dask.square(darr).sum().compute()
        assert total == (source(np, "int64") ** 2).sum()
        private = shmaccel_workers_under(pids)
        # Each dask worker process runs exactly one private pool, started on first use.
        assert all(len(found) == 1 for found in private.values()), private
    gone = wait_until(
        lambda: not any(running(w) for found in private.values() for w in found), 10.0
    )
    assert gone, (
        f"private shmaccel workers still running after the cluster closed: {private}"
    )
    assert wait_until(lambda: not any(running(pid) for pid in pids), 5.0), (
        "dask worker processes still running"
    )
    assert wait_until(lambda: shm_entries() <= shm_before, 2.0), (
        shm_entries() - shm_before
    )
