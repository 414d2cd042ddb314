#!/usr/bin/env python3
"""make_corpus.py -- writes the seed corpus of the fuzz targets into tests/fuzz/corpus/.

validate/: requests for fuzz_validate (valid ones of every op and dtype, and each edge of the
contract); protocol/: client sessions for fuzz_protocol (every message type, every kind of
descriptor); hello/: worker greetings for fuzz_hello (valid ones, refusals, each header check).
The input layouts are described at the top of each tests/fuzz/fuzz_<target>.c. Files are named
for what they hold; the script only ever adds or rewrites its own seeds (inputs found by
fuzzing, kept under other names, are left alone).

Usage: python3 tests/fuzz/make_corpus.py [--out DIR]   (default: tests/fuzz/corpus)
"""

import argparse
import pathlib
import struct

MAGIC = 0x414D4853
OPS = {"double": 1, "square": 2}
DTYPES = {  # name: (wire value, itemsize)
    "int8": (1, 1),
    "int16": (2, 2),
    "int32": (3, 4),
    "int64": (4, 8),
    "uint8": (5, 1),
    "uint16": (6, 2),
    "uint32": (7, 4),
    "uint64": (8, 8),
    "float32": (9, 4),
    "float64": (10, 8),
}
U64 = 2**64 - 1
MAX_COUNT = 1 << 40  # the worker's default limit
ARENA = 4096

HELLO, ARENA_ADD, ARENA_DEL, REPLY, STOPPING, NOTIFY, SYNC = 1, 2, 3, 4, 5, 6, 7

# fuzz_protocol's attachment kinds (enum attach) and record flags.
(
    NONE,
    MEMFD,
    SPARSE,
    SHRUNK,
    RDONLY,
    SEALED,
    EVENTFD,
    PIPE,
    SOCKET,
    DEVNULL,
    DIRECTORY,
    TMPFILE,
    TWO_MEMFDS,
    CONTROL,
    EIGHT_FDS,
    MEMFD_LARGE,
) = range(16)
FORCE_MAGIC, TYPE_MOD, PARTIAL, ID_MOD = 0x10, 0x20, 0x40, 0x80


def request(
    op=2,
    dtype=10,
    count=16,
    in_arena=0,
    out_arena=1,
    in_offset=0,
    out_offset=0,
    in_size=ARENA,
    out_size=ARENA,
    max_count=MAX_COUNT,
):
    return struct.pack(
        "<IIQIIQQQQQ",
        op,
        dtype,
        count,
        in_arena,
        out_arena,
        in_offset,
        out_offset,
        in_size,
        out_size,
        max_count,
    )


def validate_seeds():
    seeds = {}
    for op_name, op in OPS.items():
        for name, (dtype, item) in DTYPES.items():
            seeds[f"{op_name}-{name}-two-arenas"] = request(op, dtype, ARENA // item)
            seeds[f"{op_name}-{name}-in-place"] = request(
                op, dtype, 8, 0, 0, 8 * item, 8 * item
            )
    seeds.update(
        {
            "count-zero": request(count=0),
            "count-zero-offset-at-end": request(
                count=0, in_offset=ARENA, out_offset=ARENA
            ),
            "count-zero-empty-arenas": request(count=0, in_size=0, out_size=0),
            "exact-fit": request(count=ARENA // 8),
            "one-element-past-end": request(count=ARENA // 8 + 1),
            "out-one-past-end": request(count=1, out_offset=ARENA),
            "count-at-max": request(dtype=5, count=ARENA, max_count=ARENA),
            "count-above-max": request(dtype=5, count=ARENA + 1, max_count=ARENA),
            "nbytes-overflow": request(count=1 << 61),
            "nbytes-exactly-2-64": request(dtype=4, count=1 << 61, max_count=U64),
            "offset-plus-nbytes-overflow": request(
                count=2, in_offset=U64 - 7, in_size=U64
            ),
            "out-offset-overflow": request(count=2, out_offset=U64 - 15, out_size=U64),
            "huge-arenas-accepted": request(
                count=1 << 40, in_size=U64, out_size=U64, out_offset=1 << 60
            ),
            "misaligned-in": request(in_offset=4),
            "misaligned-out": request(out_offset=12),
            "int8-any-offset": request(dtype=1, count=7, in_offset=3, out_offset=1000),
            "partial-overlap-out-after": request(out_arena=0, out_offset=64),
            "partial-overlap-out-before": request(out_arena=0, in_offset=64),
            "touching-ranges": request(out_arena=0, out_offset=128),
            "same-offsets-other-arena": request(
                in_arena=3, out_arena=4, in_offset=64, out_offset=64
            ),
            "bad-op-zero": request(op=0),
            "bad-op-next": request(op=3),
            "bad-op-max": request(op=0xFFFFFFFF),
            "bad-dtype-zero": request(dtype=0),
            "bad-dtype-next": request(dtype=11),
            "short-input": request()[:20],
        }
    )
    return seeds


def record(kind, mtype, arg32=0, arg64=0, size=4096, status=0, magic=MAGIC):
    """One fuzz_protocol record: kind byte, object size, then the message. A right magic also
    sets the kind's FORCE_MAGIC bit, so that mutations of the seed keep it."""
    if magic == MAGIC:
        kind |= FORCE_MAGIC
    return struct.pack("<BQIIIiQ", kind, size, magic, mtype, arg32, status, arg64)


def add(arena_id, kind=MEMFD, size=4096, seq=None):
    return record(kind, ARENA_ADD, arena_id, arena_id + 1 if seq is None else seq, size)


def delete(arena_id, kind=NONE):
    return record(kind, ARENA_DEL, arena_id)


def notify(kind=EVENTFD):
    return record(kind, NOTIFY)


def protocol_seeds():
    seeds = {
        "add-one": add(0),
        "add-del-add": add(0) + delete(0) + add(0),
        "add-same-id-twice": add(5) + add(5),
        "add-last-id": add(1023),
        "add-id-past-table": add(1024),
        "add-id-max": add(0xFFFFFFFF),
        "add-without-fd": add(0, NONE),
        "add-size-zero": add(0, MEMFD, 0),
        "add-odd-size": add(0, MEMFD, 4097),
        "add-sparse-small": add(0, SPARSE, 4096),
        "add-sparse-limit": add(0, SPARSE, 1 << 40),
        "add-sparse-past-limit": add(0, SPARSE, (1 << 40) + 1),
        "add-sparse-max": add(0, SPARSE, 2**63 - 1),
        "add-shrunk-to-zero": add(0, SHRUNK, 8192),
        "add-shrunk-half": add(0, SHRUNK, 8192 | (1 << 40) * 4096),
        "add-read-only": add(0, RDONLY),
        "add-write-sealed": add(0, SEALED),
        "add-eventfd": add(0, EVENTFD),
        "add-pipe": add(0, PIPE),
        "add-socket": add(0, SOCKET),
        "add-devnull": add(0, DEVNULL),
        "add-directory": add(0, DIRECTORY),
        "add-tmpfile": add(0, TMPFILE),
        "add-two-fds": add(0, TWO_MEMFDS, 4096 | (8192 << 32)),
        "add-control-segment": add(0, CONTROL),
        "add-eight-fds": add(0, EIGHT_FDS),
        "add-large": add(0, MEMFD_LARGE, 16 << 20),
        "del-unknown": delete(7),
        "del-id-max": delete(0xFFFFFFFF),
        "del-with-fd": add(0) + delete(0, MEMFD),
        "notify": notify(),
        "notify-twice": notify() + notify(),
        "notify-without-fd": notify(NONE),
        "notify-memfd": notify(MEMFD),
        "notify-pipe": notify(PIPE),
        "hello-from-client": record(NONE, HELLO),
        "reply-from-client": record(NONE, REPLY),
        "stopping-from-client": record(NONE, STOPPING),
        "type-zero": record(NONE, 0),
        "type-unknown-with-fd": record(MEMFD, 8),
        "sync": record(NONE, SYNC, 3, 42),
        "sync-with-fd": record(MEMFD, SYNC, 0, 1),
        "del-then-sync": add(0) + delete(0) + record(NONE, SYNC, 0, 2) + add(0),
        "bad-magic": record(MEMFD, ARENA_ADD, magic=0x12345678),
        "partial-message": add(0) + record(MEMFD | PARTIAL, ARENA_ADD, 1, 2, size=13),
        "partial-empty": record(PARTIAL, ARENA_ADD, size=0),
        "typical-session": notify()
        + add(0, MEMFD, 1 << 20)
        + add(1, MEMFD, 65536)
        + delete(0)
        + add(0, MEMFD, 1 << 20)
        + delete(1),
        "many-arenas": b"".join(add(i, MEMFD, 4096 * (i + 1)) for i in range(16)),
        "late-del-then-readd": add(2) + delete(2) + delete(2) + add(2, MEMFD, 8192),
        "ids-collide": b"".join(
            record(MEMFD | ID_MOD | TYPE_MOD, ARENA_ADD + (i % 2), i, i)
            for i in range(8)
        ),
    }
    return seeds


# fuzz_hello's attachment kinds and flags.
H_NONE, H_SEGMENT, H_OVERSIZED, H_RDONLY, H_PIPE, H_TWO, H_DEVZERO, H_LARGE = range(8)
H_MAGIC, H_TYPE, H_SIZE, H_HEADER, H_PARTIAL = 0x08, 0x10, 0x20, 0x40, 0x80
CONTROL_HEADER, CLIENT_AREA = 256, 128 + 128 * 64
PROTO_VERSION, EFULL = 3, -4011


def control_size(max_clients):
    return CONTROL_HEADER + max_clients * CLIENT_AREA


def header(
    magic=MAGIC,
    version=PROTO_VERSION,
    header_size=CONTROL_HEADER,
    area_size=CLIENT_AREA,
    max_clients=4,
    threads=2,
):
    """The first 64 bytes of an sa_control; the rest of the 256 stays zero."""
    fields = struct.pack(
        "<IIIIIIiIQQ",
        magic,
        version,
        header_size,
        area_size,
        max_clients,
        threads,
        1234,
        0,
        0,
        MAX_COUNT,
    )
    return fields.ljust(CONTROL_HEADER, b"\0")


def hello(
    kind=H_SEGMENT | H_MAGIC | H_TYPE | H_SIZE,
    size=None,
    seat=0,
    status=0,
    arg64=0,
    mtype=HELLO,
    head=None,
    magic=MAGIC,
):
    """One fuzz_hello input: kind byte, segment size, the message, the segment's header."""
    if size is None:
        size = control_size(4)
    msg = struct.pack("<IIIiQ", magic, mtype, seat, status, arg64)
    return struct.pack("<BQ", kind, size) + msg + (header() if head is None else head)


def hello_seeds():
    fixed = H_SEGMENT | H_MAGIC | H_TYPE | H_SIZE
    return {
        "valid-seat-0": hello(),
        "valid-last-seat": hello(seat=3),
        "valid-one-client": hello(size=control_size(1), head=header(max_clients=1)),
        "valid-1024-clients": hello(
            kind=H_LARGE | H_MAGIC | H_TYPE | H_SIZE,
            size=control_size(1024),
            head=header(max_clients=1024),
        ),
        "valid-segment-larger": hello(size=control_size(4) + 4096),
        "seat-past-clients": hello(seat=4),
        "seat-max": hello(seat=0xFFFFFFFF),
        "zero-clients": hello(head=header(max_clients=0)),
        "clients-past-limit": hello(
            kind=H_LARGE | H_MAGIC | H_TYPE | H_SIZE,
            size=control_size(1025),
            head=header(max_clients=1025),
        ),
        "clients-past-segment": hello(head=header(max_clients=5)),
        "clients-max": hello(head=header(max_clients=0xFFFFFFFF)),
        "segment-smaller-than-header": hello(size=100),
        "segment-empty": hello(size=0),
        "segment-oversized": hello(kind=H_OVERSIZED | H_MAGIC | H_TYPE | H_SIZE),
        "size-mismatch": hello(
            kind=H_SEGMENT | H_MAGIC | H_TYPE, arg64=control_size(4) + 1
        ),
        "bad-header-magic": hello(head=header(magic=0)),
        "other-version": hello(head=header(version=PROTO_VERSION + 1)),
        "other-header-size": hello(head=header(header_size=512)),
        "other-area-size": hello(head=header(area_size=CLIENT_AREA * 2)),
        "refused-full": hello(kind=H_NONE | H_MAGIC | H_TYPE, status=EFULL),
        "refused-with-fd": hello(status=-1),
        "no-fd": hello(kind=H_NONE | H_MAGIC | H_TYPE),
        "not-a-hello": hello(mtype=REPLY),
        "bad-magic": hello(kind=H_SEGMENT | H_TYPE | H_SIZE, magic=0),
        "read-only-segment": hello(kind=H_RDONLY | H_MAGIC | H_TYPE | H_SIZE),
        "pipe": hello(kind=H_PIPE | H_MAGIC | H_TYPE | H_SIZE),
        "two-fds": hello(kind=H_TWO | H_MAGIC | H_TYPE | H_SIZE),
        "dev-zero": hello(kind=H_DEVZERO | H_MAGIC | H_TYPE | H_SIZE),
        "partial": hello(kind=fixed | H_PARTIAL, size=control_size(4) + 10),
        "partial-empty": hello(
            kind=fixed | H_PARTIAL, size=control_size(4) - control_size(4) % 24
        ),
        "header-fixed-by-flag": hello(
            kind=fixed | H_HEADER, head=bytes(16) + header()[16:]
        ),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", default=pathlib.Path(__file__).parent / "corpus", type=pathlib.Path
    )
    args = parser.parse_args()
    for target, seeds in (
        ("validate", validate_seeds()),
        ("protocol", protocol_seeds()),
        ("hello", hello_seeds()),
    ):
        folder = args.out / target
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in seeds.items():
            (folder / f"seed-{name}").write_bytes(data)
        print(f"{folder}: {len(seeds)} seeds")


if __name__ == "__main__":
    main()
