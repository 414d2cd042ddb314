# Makefile -- builds the worker, the C client library and the CPython extension (in place),
# runs the tests, the demo and the benchmarks. `make help` lists the targets.

PYTHON ?= python3
CC ?= gcc
BUILD ?= build

CSTD := -std=c11 -D_GNU_SOURCE
WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
OPT ?= -O2 -g
CFLAGS_ALL := $(CSTD) $(WARN) $(OPT) -fPIC -Iinclude -Isrc $(EXTRA_CFLAGS)
LDLIBS := -pthread -lrt

PY_INCLUDE := $(shell $(PYTHON) -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
PY_EXT := $(shell $(PYTHON) -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')

# The C client library: everything a client (C program or the extension) links.
LIB_SRC := src/errors.c src/dtype.c src/validate.c src/time.c src/fault.c src/shm.c src/sock.c \
           src/paths.c src/client.c src/client_block.c src/client_req.c
# The worker program: the library's common parts plus the pool.
WORKER_SRC := src/errors.c src/dtype.c src/validate.c src/time.c src/fault.c src/shm.c \
              src/sock.c src/paths.c src/kernels.c src/guard.c src/pool.c src/session.c src/worker_state.c src/worker_main.c
EXT_SRC := pyshim/ext/module.c pyshim/ext/block.c pyshim/ext/client.c pyshim/ext/pending.c
HEADERS := include/shmaccel.h src/internal.h pyshim/ext/shim.h

C_TESTS := $(patsubst tests/c/%.c,$(BUILD)/tests/%,$(wildcard tests/c/test_*.c))
# C programs the Python tests drive (a hostile client).
TEST_TOOLS := $(BUILD)/tests/tamper_client

WORKER := $(BUILD)/shmaccel-worker
LIB := $(BUILD)/libshmaccel.a
SHLIB := $(BUILD)/libshmaccel.so
EXT_DIR ?= pyshim/shmaccel
EXT := $(EXT_DIR)/_shmaccel$(PY_EXT)

.PHONY: all test test-c test-py deps demo bench sanitize sanitize-c sanitize-py sanitize-tsan clean help \
        vectorize-report

all: $(WORKER) $(LIB) $(SHLIB) $(EXT)

help:
	@echo "make           build the worker, the C library and the extension (in place)"
	@echo "make demo      run scripts/demo.py (the main job for a newcomer)"
	@echo "make test      C tests + pytest (installs pytest if missing)"
	@echo "make bench     speed against numpy and the C limits (scripts/bench.py)"
	@echo "make sanitize  C tests and the whole pytest suite against ASan+UBSan builds, then the"
	@echo "               TSan worker under the threaded tests (sanitize-c, -py, -tsan alone)"
	@echo "make valgrind  the worker under memcheck through test sessions"
	@echo "make faults    fault-injection tests (make faults-soak: the full counts)"
	@echo "make fuzz      libFuzzer over validation and the protocol (FUZZ_SECONDS=60)"
	@echo "make lint      clang-format and cppcheck over the C, ruff and mypy over the Python"
	@echo "               (lint-c, lint-py alone)"

$(BUILD)/obj/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

# The kernels are what gcc must vectorize.
$(BUILD)/obj/src/kernels.o: src/kernels.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -O3 -c $< -o $@

$(BUILD)/obj/pyshim/%.o: pyshim/%.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Wno-missing-prototypes -Wno-cast-function-type -I$(PY_INCLUDE) -Ipyshim/ext -c $< -o $@

$(WORKER): $(patsubst %.c,$(BUILD)/obj/%.o,$(WORKER_SRC))
	$(CC) $(OPT) $(EXTRA_LDFLAGS) -o $@ $^ $(LDLIBS)

$(LIB): $(patsubst %.c,$(BUILD)/obj/%.o,$(LIB_SRC))
	rm -f $@
	ar rcs $@ $^

$(SHLIB): $(patsubst %.c,$(BUILD)/obj/%.o,$(LIB_SRC))
	$(CC) -shared $(EXTRA_LDFLAGS) -o $@ $^ $(LDLIBS)

$(EXT): $(patsubst %.c,$(BUILD)/obj/%.o,$(EXT_SRC)) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) -shared $(EXTRA_LDFLAGS) -o $@ $(patsubst %.c,$(BUILD)/obj/%.o,$(EXT_SRC)) $(LIB) $(LDLIBS)

# C tests link the library and, where they test worker internals, the worker's objects.
$(BUILD)/tests/%: tests/c/%.c tests/c/ctest.h $(LIB) $(patsubst %.c,$(BUILD)/obj/%.o,src/kernels.c) $(WORKER)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Wno-missing-prototypes -Itests/c -o $@ $< $(BUILD)/obj/src/kernels.o $(LIB) $(EXTRA_LDFLAGS) $(LDLIBS)

deps:
	@$(PYTHON) scripts/ensure_deps.py

test-c: $(C_TESTS) $(WORKER) $(EXT)
	@set -e; for t in $(C_TESTS); do SHMACCEL_WORKER=$(abspath $(WORKER)) $(TEST_WRAPPER) $$t; done

test-py: all deps $(TEST_TOOLS)
	SHMACCEL_WORKER=$(abspath $(WORKER)) PYTHONPATH=pyshim $(PYTHON) -m pytest -q tests $(PYTEST_ARGS)

test: all test-c test-py

demo: all
	PYTHONPATH=pyshim $(PYTHON) scripts/demo.py

bench: all
	@$(PYTHON) scripts/ensure_deps.py --bench
	PYTHONPATH=pyshim $(PYTHON) scripts/bench.py $(BENCH_ARGS)

vectorize-report:
	$(CC) $(CFLAGS_ALL) -O3 -fopt-info-vec-optimized -c src/kernels.c -o /dev/null 2>&1 | sort | uniq -c

# `make sanitize` runs three builds one after the other; any sanitizer report fails it:
#   sanitize-c     ASan+UBSan worker, C library and C tests (which drive real workers, so the
#                  worker's reports count too), leak checks on;
#   sanitize-py    the whole pytest suite against the ASan+UBSan worker and extension (a copy
#                  of the package in build-asan/py, python with libasan preloaded; leak checks
#                  stay with the C tests and `make valgrind`: CPython leaks by design at exit);
#   sanitize-tsan  the TSan worker under the threaded and correctness pytest cases.
SAN_TESTS := $(patsubst $(BUILD)/%,build-asan/%,$(C_TESTS))
SAN_OPT := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
SAN_MAKE := $(MAKE) BUILD=build-asan OPT="$(SAN_OPT)" EXTRA_LDFLAGS="-fsanitize=address,undefined"
SAN_PY := build-asan/py

sanitize:
	$(MAKE) sanitize-c
	$(MAKE) sanitize-py
	$(MAKE) sanitize-tsan

sanitize-c: all
	$(SAN_MAKE) build-asan/shmaccel-worker $(SAN_TESTS)
	@set -e; for t in $(SAN_TESTS); do \
	    SHMACCEL_WORKER=$(abspath build-asan/shmaccel-worker) ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 $$t; done

sanitize-py: all deps $(TEST_TOOLS)
	$(SAN_MAKE) EXT_DIR=$(SAN_PY)/shmaccel build-asan/shmaccel-worker $(SAN_PY)/shmaccel/_shmaccel$(PY_EXT)
	cp pyshim/shmaccel/*.py pyshim/shmaccel/*.pyi pyshim/shmaccel/py.typed $(SAN_PY)/shmaccel/
	SHMACCEL_WORKER=$(abspath build-asan/shmaccel-worker) PYTHONPATH=$(SAN_PY) \
	    LD_PRELOAD=$$($(CC) -print-file-name=libasan.so) \
	    ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	    $(PYTHON) -m pytest -q -p no:cacheprovider tests $(PYTEST_ARGS)

sanitize-tsan: all deps
	$(MAKE) BUILD=build-tsan OPT="-O1 -g -fsanitize=thread" EXTRA_LDFLAGS="-fsanitize=thread" build-tsan/shmaccel-worker
	SHMACCEL_WORKER=$(abspath build-tsan/shmaccel-worker) TSAN_OPTIONS="halt_on_error=1 abort_on_error=1 suppressions=$(abspath tests/tsan.supp)" \
	    PYTHONPATH=pyshim $(PYTHON) -m pytest -q -p no:cacheprovider tests -k "(thread or correctness) and not fairness" $(PYTEST_ARGS)

clean:
	rm -rf build build-asan build-tsan pyshim/shmaccel/_shmaccel*.so

# Further targets, one file per concern (fault injection, fuzzing, ...).
include $(wildcard mk/*.mk)
