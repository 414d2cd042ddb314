"""Many clients on one named pool: every call of every thread of every process comes back
right, and a light client gets all its calls served while a neighbour floods the pool.

The pool is started with scripts/shmaccel-pool, as a user would; the clients are real
processes. Nothing here measures speed: a design that starves a client fails by running into
the generous overall deadline, not by an assertion on latency (scripts/bench_fairness.py
measures the latencies).
"""

from conftest import pool_status, wait_until

CLIENTS = 8
THREADS_PER_CLIENT = 16
CALLS_PER_THREAD = 100
# Every child reports within this; a pool that starves a client fails here.
MIXED_DEADLINE_S = 120.0

FLOOD_THREADS = 32
FLOOD_ELEMENTS = 4_000_000
LIGHT_CALLS = 200
LIGHT_ELEMENTS = 1000
LIGHT_DEADLINE_S = 60.0


def fields(line):
    """{key: int} of a 'WORD key=value ...' line."""
    return {k: int(v) for k, v in (item.split("=", 1) for item in line.split()[1:])}


# ------------------------------------------------------------------------------------------------
# many processes, many threads, mixed calls

# argv: pool name, child index, threads, calls per thread. Prints READY, waits for a line on
# stdin (so that all children start calling together), then SUMMARY; exit status 0 only if
# every result was right. Inputs repeat a random block of a prime length, so a 100 000-element
# result is checked by one bytes comparison against the tiled reference block.
MIXED_CLIENT = r"""
import array, random, sys, threading, traceback
import shmaccel

name, index, nthreads, ncalls = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
TYPECODES = {"int8": "b", "int16": "h", "int32": "i", "int64": "q", "uint8": "B",
             "uint16": "H", "uint32": "I", "uint64": "Q", "float32": "f", "float64": "d"}
BLOCK = 251
rng = random.Random(1000 + index)


def to_dtype(value, dtype):
    # What C stores for value in dtype: integers wrap, float32 rounds (overflow gives inf).
    tc = TYPECODES[dtype]
    if dtype.startswith("float"):
        return array.array(tc, [value])[0]
    bits = array.array(tc).itemsize * 8
    value &= (1 << bits) - 1
    if dtype.startswith("int") and value >= 1 << (bits - 1):
        value -= 1 << bits
    return value


def random_value(dtype):
    if dtype == "float64":
        if rng.random() < 0.5:
            return rng.uniform(-1000.0, 1000.0)
        return rng.uniform(-1.0, 1.0) * 10.0 ** rng.randint(-150, 150)
    if dtype == "float32":  # squares of the larger ones overflow to inf
        if rng.random() < 0.5:
            return rng.uniform(-1000.0, 1000.0)
        return rng.uniform(-1.0, 1.0) * 10.0 ** rng.randint(-20, 20)
    bits = array.array(TYPECODES[dtype]).itemsize * 8
    lo = -(1 << (bits - 1)) if dtype.startswith("int") else 0
    return rng.randint(lo, lo + (1 << bits) - 1)


# dtype -> (input block, {op: reference block}) as bytes
blocks = {}
for dtype, tc in TYPECODES.items():
    data = array.array(tc, [to_dtype(random_value(dtype), dtype) for _ in range(BLOCK)])
    blocks[dtype] = (data.tobytes(), {
        "square": array.array(tc, [to_dtype(x * x, dtype) for x in data]).tobytes(),
        "double": array.array(tc, [to_dtype(x * 2, dtype) for x in data]).tobytes(),
    })
# Lists: int64 arithmetic whose results fit (|v| < 3e9), and floats (a few ints among them).
int_list = [rng.randint(-3 * 10**9, 3 * 10**9) for _ in range(BLOCK)]
float_list = [rng.uniform(-1e6, 1e6) if i % 17 else i for i in range(BLOCK)]


def tiled(block, rotate, nbytes):
    rotated = block[rotate:] + block[:rotate]
    return (rotated * (nbytes // len(rotated) + 1))[:nbytes]


def pick_size(r):
    roll = r.random()
    if roll < 0.3:
        return r.randint(1, 100)
    if roll < 0.7:
        return r.randint(100, 5000)
    if roll < 0.97:
        return r.randint(5000, 100_000)
    return 200_000  # 1.6 MB of an 8-byte dtype: split into chunks that every pool thread takes


pool = shmaccel.Pool(name)
results = [[] for _ in range(nthreads)]  # per thread: (ok, elements, description)


def one_call(r, op):
    kind = r.random()
    if kind < 0.2:
        values = int_list if r.random() < 0.5 else float_list
        rot, n = r.randrange(BLOCK), r.randint(1, 3000)
        source = (values[rot:] + values[:rot]) * (n // BLOCK + 1)
        source = source[:n]
        want = [v * v if op == "square" else v * 2 for v in source]
        got = getattr(pool, op)(source)
        return got == want, n, f"list n={n} {op}"
    dtype = r.choice(list(TYPECODES))
    tc, itemsize = TYPECODES[dtype], array.array(TYPECODES[dtype]).itemsize
    n = pick_size(r)
    if n == 200_000 and itemsize != 8:
        dtype, tc, itemsize = "float64", "d", 8
    in_block, out_blocks = blocks[dtype]
    rot = r.randrange(BLOCK) * itemsize
    source = tiled(in_block, rot, n * itemsize)
    want = tiled(out_blocks[op], rot, n * itemsize)
    if kind < 0.35:
        data = array.array(tc)
        data.frombytes(source)
        got = getattr(pool, op)(data)
        return got.tobytes() == want, n, f"array.array {dtype} n={n} {op}"
    shared = pool.empty(n, dtype)
    memoryview(shared).cast("B")[:] = source
    mode = r.choice(("new", "out", "inplace"))
    if mode == "new":
        got = getattr(pool, op)(shared)
    elif mode == "out":
        out = pool.empty(n, dtype)
        got = getattr(pool, op)(shared, out=out)
        assert got is out
    else:
        got = getattr(pool, op)(shared, out=shared)
        assert got is shared
    return memoryview(got).cast("B").tobytes() == want, n, f"SharedArray {dtype} n={n} {op} {mode}"


def run(tid):
    r = random.Random(index * 1000 + tid)
    for k in range(ncalls):
        op = r.choice(("square", "double"))
        try:
            results[tid].append(one_call(r, op))
        except Exception:
            results[tid].append((None, 0, f"call {k}: " + traceback.format_exc(limit=3)))


print("READY", flush=True)
sys.stdin.readline()
threads = [threading.Thread(target=run, args=(t,)) for t in range(nthreads)]
for t in threads:
    t.start()
for t in threads:
    t.join()
flat = [res for per_thread in results for res in per_thread]
correct = sum(1 for ok, _, _ in flat if ok is True)
wrong = [desc for ok, _, desc in flat if ok is False]
errors = [desc for ok, _, desc in flat if ok is None]
for desc in (wrong + errors)[:5]:
    print("BAD", desc.replace("\n", " | "), flush=True)
stats = pool.stats()
print(f"SUMMARY calls={len(flat)} correct={correct} wrong={len(wrong)} errors={len(errors)} "
      f"elements={sum(n for _, n, _ in flat)} client_requests={stats['client_requests']} "
      f"client_elements={stats['client_elements']} client_errors={stats['client_errors']}",
      flush=True)
pool.close()
sys.exit(0 if correct == len(flat) == nthreads * ncalls else 1)
"""


def test_eight_processes_of_sixteen_threads_get_every_mixed_call_right(
    cli_pool, children
):
    clients = [
        children.python(
            MIXED_CLIENT, cli_pool.name, index, THREADS_PER_CLIENT, CALLS_PER_THREAD, stdin=True
        )
        for index in range(CLIENTS)
    ]
    for child in clients:
        child.expect("READY", timeout=30)
    for child in clients:  # all call at once
        child.send("go\n")

    summaries = []
    for child in clients:
        line = child.expect("SUMMARY", timeout=MIXED_DEADLINE_S)
        assert child.finish(timeout=30) == 0, child.transcript()
        summaries.append(fields(line))

    calls = THREADS_PER_CLIENT * CALLS_PER_THREAD
    for child, summary in zip(clients, summaries, strict=True):
        assert summary["calls"] == summary["correct"] == calls, child.transcript()
        assert summary["wrong"] == summary["errors"] == summary["client_errors"] == 0
        # The worker counted exactly this client's calls on its seat: none lost or repeated.
        assert summary["client_requests"] == calls, summary
        assert summary["client_elements"] == summary["elements"], summary

    status = pool_status(cli_pool.name)
    assert status["errors"] == 0, status
    assert status["requests"] == CLIENTS * calls, status
    assert status["elements"] == sum(s["elements"] for s in summaries), status


# ------------------------------------------------------------------------------------------------
# a light client next to a flooding one

# argv: pool name, threads, elements. Its threads square big float64 arrays in place for ever
# (zeros, so threads sharing an array cannot change it); prints FLOODING once at least half of
# them have a request queued or running and requests complete, then a STATUS line per line read.
FLOODER = r"""
import sys, threading, time
import shmaccel

name, nthreads, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
pool = shmaccel.Pool(name)
arrays = [pool.zeros(n, "float64") for _ in range(8)]


def flood(a):
    while True:
        pool.square(a, out=a)


for i in range(nthreads):
    threading.Thread(target=flood, args=(arrays[i % len(arrays)],), daemon=True).start()
deadline = time.monotonic() + 30
while True:
    stats = pool.stats()
    if stats["client_in_flight"] >= nthreads // 2 and stats["client_requests"] > 0:
        break
    if time.monotonic() > deadline:
        print("NOT FLOODING", stats, flush=True)
        sys.exit(1)
    time.sleep(0.01)
print(f"FLOODING in_flight={stats['client_in_flight']} requests={stats['client_requests']}",
      flush=True)
for _ in sys.stdin:
    stats = pool.stats()
    print(f"STATUS in_flight={stats['client_in_flight']} requests={stats['client_requests']}",
          flush=True)
"""

# argv: pool name, calls, elements. Squares a fresh 1000-element float64 array per call and
# checks each result; prints DONE with the count of right results.
LIGHT_CLIENT = r"""
import array, sys
import shmaccel

name, ncalls, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
pool = shmaccel.Pool(name)
data, out = pool.empty(n, "float64"), pool.empty(n, "float64")
correct = 0
for k in range(ncalls):
    values = array.array("d", [(i - n // 2) * 0.25 + k for i in range(n)])
    memoryview(data).cast("B")[:] = values.tobytes()
    assert pool.square(data, out=out) is out
    if memoryview(out).cast("B").tobytes() == array.array("d", [v * v for v in values]).tobytes():
        correct += 1
    else:
        print(f"BAD call {k}: {out[:4].tolist()} for {values[:4].tolist()}", flush=True)
print(f"DONE calls={ncalls} correct={correct}", flush=True)
pool.close()
"""


def test_light_client_gets_all_calls_served_while_a_neighbour_floods_the_pool(
    cli_pool, children
):
    flooder = children.python(
        FLOODER, cli_pool.name, FLOOD_THREADS, FLOOD_ELEMENTS, stdin=True
    )
    try:
        flooding = fields(flooder.expect("FLOODING", timeout=60))
        # Connected after the flooder, the light client has the later seat: the harder case
        # for the worker's round robin between seats.
        light = children.python(LIGHT_CLIENT, cli_pool.name, LIGHT_CALLS, LIGHT_ELEMENTS)
        # No latency is asserted: a pool that starves the light client fails here.
        done = fields(light.expect("DONE", timeout=LIGHT_DEADLINE_S))
        assert light.finish(timeout=30) == 0, light.transcript()
        assert done == {"calls": LIGHT_CALLS, "correct": LIGHT_CALLS}, light.transcript()

        # The light calls ran under the flood: it was on before the first of them, and after
        # the last the flooder still runs with requests in flight, and has made progress.
        assert flooder.proc.poll() is None, flooder.transcript()
        flooder.send("\n")
        after = fields(flooder.expect("STATUS", timeout=30))
        assert after["in_flight"] >= 1, flooder.transcript()
        assert after["requests"] > flooding["requests"], flooder.transcript()
    finally:
        if flooder.proc.poll() is None:
            flooder.proc.kill()
        flooder.proc.wait(10)
    status = pool_status(cli_pool.name)
    assert status["errors"] == 0, status
    assert wait_until(lambda: pool_status(cli_pool.name)["clients"] == 0, 10), cli_pool.log()
