#!/bin/sh
# ensure_lint_tools.sh -- makes sure clang-format and cppcheck are there for `make lint-c`,
# installing them from Debian's packages when we are root, else saying exactly what to install.
#
# Usage: sh scripts/ensure_lint_tools.sh. Exit status 0 when both are there.
# The tree is formatted with clang-format 14 (Debian 12); another major version may format
# some constructs differently, so a mismatch is reported (not fatal).
set -u

missing() {
    for tool in clang-format cppcheck; do
        command -v "$tool" >/dev/null 2>&1 || echo "$tool"
    done
}

gaps=$(missing)
if [ -n "$gaps" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "ensure_lint_tools: missing: $(echo $gaps); installing from Debian's packages" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || exit 1
    apt-get install -y -qq --no-install-recommends clang-format cppcheck >&2 || exit 1
    gaps=$(missing)
fi

if [ -n "$gaps" ]; then
    echo "ensure_lint_tools: missing: $(echo $gaps)." >&2
    echo "  Install them (Debian/Ubuntu): sudo apt-get install clang-format cppcheck" >&2
    exit 1
fi

major=$(clang-format --version | sed -n 's/.*clang-format version \([0-9]*\).*/\1/p')
if [ "$major" != 14 ]; then
    echo "ensure_lint_tools: note: clang-format ${major:-?} here, the tree is formatted with" \
         "clang-format 14: differences may be the version's, not the code's" >&2
fi
exit 0
