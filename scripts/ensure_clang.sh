#!/bin/sh
# ensure_clang.sh -- makes sure clang, libFuzzer (with ASan/UBSan) and llvm-profdata/llvm-cov
# are there for `make fuzz` and `make fuzz-coverage`, installing them from Debian's packages
# when we are root, else saying exactly what to install.
#
# Usage: scripts/ensure_clang.sh [CLANG]   (default: clang). Exit status 0 when all is there.
# Debian 12 names: clang (clang-14), libclang-rt-14-dev (libFuzzer and the sanitizer runtimes,
# only a Recommends of clang), llvm (llvm-profdata, llvm-cov).
set -u

CLANG=${1:-clang}
PROBE_DIR=$(mktemp -d)
trap 'rm -rf "$PROBE_DIR"' EXIT

# The tools next to clang (/usr/lib/llvm-N/bin) match its profile format; else those on PATH.
llvm_tool() {
    dir=$(dirname "$(readlink -f "$(command -v "$CLANG")")")
    if [ -x "$dir/$1" ]; then
        echo "$dir/$1"
    else
        command -v "$1"
    fi
}

# Links a do-nothing fuzz target: the only sure test that libFuzzer's runtime is installed.
fuzzer_links() {
    printf '%s\n' '#include <stddef.h>' '#include <stdint.h>' \
        'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);' \
        'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }' \
        >"$PROBE_DIR/probe.c"
    "$CLANG" -fsanitize=fuzzer,address,undefined "$PROBE_DIR/probe.c" -o "$PROBE_DIR/probe" \
        >/dev/null 2>&1
}

missing() {
    if ! command -v "$CLANG" >/dev/null 2>&1; then
        echo "$CLANG"
        return
    fi
    fuzzer_links || echo "libFuzzer"
    [ -n "$(llvm_tool llvm-profdata)" ] || echo "llvm-profdata"
    [ -n "$(llvm_tool llvm-cov)" ] || echo "llvm-cov"
}

# Packages for what is missing: clang and llvm by their default names, the runtime by the
# installed clang's major version (libclang-rt-N-dev; older Debian had it in clang itself).
packages() {
    pkgs="clang llvm"
    if command -v "$CLANG" >/dev/null 2>&1; then
        major=$("$CLANG" -dumpversion 2>/dev/null | cut -d. -f1)
        pkgs="$pkgs libclang-rt-$major-dev"
    else
        pkgs="$pkgs libclang-rt-14-dev"
    fi
    echo "$pkgs"
}

gaps=$(missing)
[ -z "$gaps" ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "ensure_clang: missing: $(echo $gaps); installing from Debian's packages" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || exit 1
    # clang first: the runtime's package name depends on the version it brings.
    apt-get install -y -qq --no-install-recommends clang llvm >&2 || exit 1
    for pkg in $(packages); do
        if apt-cache show "$pkg" >/dev/null 2>&1; then
            apt-get install -y -qq --no-install-recommends "$pkg" >&2 || exit 1
        fi
    done
    gaps=$(missing)
    [ -z "$gaps" ] && exit 0
fi

echo "ensure_clang: missing: $(echo $gaps)." >&2
echo "  Install them (Debian/Ubuntu): sudo apt-get install --no-install-recommends $(packages)" >&2
echo "  (libclang-rt-N-dev must match clang's major version N: clang -dumpversion)" >&2
exit 1
