# mk/lint.mk -- static checks: the C sources against .clang-format and cppcheck, the Python
# against ruff and mypy (their settings, and mypy's file list, are in pyproject.toml).
#
#   make lint      lint-c, then lint-py; any finding fails it.
#   make lint-c    clang-format --dry-run over every C file (format in place with
#                  clang-format -i $(LINT_C_FILES)), then cppcheck (warning, performance,
#                  portability; silence a false positive inline with /* cppcheck-suppress ID */).
#   make lint-py   ruff check, then mypy.
#
# lint-c installs clang-format and cppcheck when missing (scripts/ensure_lint_tools.sh),
# lint-py installs ruff and mypy (scripts/ensure_deps.py --lint).

LINT_C_FILES := $(wildcard src/*.c src/*.h include/*.h pyshim/ext/*.c pyshim/ext/*.h \
                           tests/c/*.c tests/c/*.h bench/*.c examples/*.c tests/fuzz/*.c \
                           tests/fuzz/*.h)
# No --library=posix: its declarations give false positives here.
CPPCHECK_FLAGS := --quiet --std=c11 --library=python --enable=warning,performance,portability \
                  --inline-suppr --error-exitcode=1 -D_GNU_SOURCE -D__x86_64__ \
                  -Iinclude -Isrc -Ipyshim/ext --suppress=missingIncludeSystem
CPPCHECK_DIRS := src pyshim/ext bench examples tests/c tests/fuzz

.PHONY: lint lint-c lint-py

# One after the other, also under make -j.
lint:
	$(MAKE) lint-c
	$(MAKE) lint-py

lint-c:
	@sh scripts/ensure_lint_tools.sh
	clang-format --dry-run --Werror $(LINT_C_FILES)
	cppcheck $(CPPCHECK_FLAGS) $(CPPCHECK_DIRS)

# Bare commands: what to check, and how, comes from pyproject.toml.
lint-py:
	@$(PYTHON) scripts/ensure_deps.py --lint
	$(PYTHON) -m ruff check
	$(PYTHON) -m mypy
