# valgrind.mk -- `make valgrind`: the worker under memcheck through real test sessions.
#
# Every worker the selected pytest cases start runs under valgrind (SHMACCEL_WORKER points at
# a wrapper); each writes its own log. Any memcheck error or definitely lost block in any
# worker that exited normally fails the target. Workers killed on purpose by a test leave a
# log without a summary; they are counted, not judged.

VG_DIR := $(BUILD)/valgrind
VG_TESTS ?= tests/test_threads.py tests/test_futures_asyncio.py tests/test_tampering.py tests/test_lists.py

.PHONY: valgrind
valgrind: all $(TEST_TOOLS)
	@command -v valgrind >/dev/null || { \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	        apt-get update -qq && apt-get install -y -qq --no-install-recommends valgrind; \
	    else echo "make valgrind needs valgrind: apt-get install valgrind" >&2; exit 1; fi; }
	@rm -rf $(VG_DIR) && mkdir -p $(VG_DIR)
	@printf '#!/bin/sh\nexec valgrind --tool=memcheck --leak-check=full --errors-for-leak-kinds=definite --track-fds=no --log-file=%s/worker-%%p.log %s "$$@"\n' \
	    "$(abspath $(VG_DIR))" "$(abspath $(WORKER))" > $(VG_DIR)/shmaccel-worker
	@chmod +x $(VG_DIR)/shmaccel-worker
	SHMACCEL_WORKER=$(abspath $(VG_DIR))/shmaccel-worker PYTHONPATH=pyshim \
	    $(PYTHON) -m pytest -q -p no:cacheprovider $(VG_TESTS) $(PYTEST_ARGS)
	@$(PYTHON) scripts/valgrind_report.py $(VG_DIR)
