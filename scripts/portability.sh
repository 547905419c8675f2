#!/bin/sh
# scripts/portability.sh — cross-builds gfn and the test runner for other CPUs and runs them under
# qemu-user (a dev script, not part of `make test`). Targets: s390x (64-bit big-endian), i686
# (32-bit x86, x87 floating point: Debian's default), i686sse (the same compiler with
# -msse2 -mfpmath=sse: 32-bit with SSE arithmetic; qemu runs it about 10x faster than x87), aarch64 and
# armhf (32-bit ARM), each with OpenMP on and off, static, ARCH= (no -march=native), -Werror. Needs Debian's cross compilers and qemu-user-static:
#   apt-get install gcc-s390x-linux-gnu gcc-i686-linux-gnu gcc-aarch64-linux-gnu \
#                   gcc-arm-linux-gnueabihf qemu-user-static
# Usage, from the repository root:
#   scripts/portability.sh build  [TARGET...]   cross-build (OMP=1 and OMP=0) + the x86-64 reference
#   scripts/portability.sh sample [TARGET...]   fixed-seed samples and per-token log-probabilities
#                                              from weights/base.ckpt, compared with x86-64
#   scripts/portability.sh test   [TARGET...]   the whole suite under qemu (slow: minutes per target;
#                                              OMP_NUM_THREADS=1; the data suites run when
#                                              ./data or ../shared/data is there)
#   scripts/portability.sh table                the Markdown table of what was measured
# Results go to $PORT_DIR (/tmp/gfn_port). TESTS_OMP="0 1" chooses the builds the suite runs on;
# SUITES="pretrain gfn" runs only those suites. NATIVE32=1 runs the i686 builds without qemu, as
# 32-bit processes of an x86-64 Linux host (the CPU's own x87 and SSE units, in compatibility mode);
# their results go to $PORT_DIR/TARGET-ompN as well, so say which way they ran.
set -u
PORT_DIR=${PORT_DIR:-/tmp/gfn_port}
ALL="s390x i686 i686sse aarch64 armhf"
MODE=${1:-all}; [ $# -gt 0 ] && shift
TARGETS=${*:-$ALL}
export OMP_NUM_THREADS=1
# Set here so that gfn_threads_init (util.c) does not re-execute the program to set it: under
# qemu-user the guest's execve of /proc/self/exe is the host's, so an i686 build with OpenMP went
# on as a native 32-bit process (x86-64 runs those) instead of under qemu, and the other targets'
# re-exec fails (ENOEXEC) and they carry on under qemu.
export OMP_WAIT_POLICY=passive
mkdir -p "$PORT_DIR/results"

triple() { case $1 in s390x) echo s390x-linux-gnu;; i686|i686sse) echo i686-linux-gnu;; aarch64) echo aarch64-linux-gnu;;
                       armhf) echo arm-linux-gnueabihf;; x86_64) echo x86_64;; esac; }
emulator() { case $1 in s390x) echo qemu-s390x-static;; i686|i686sse) [ "${NATIVE32:-0}" = 1 ] || echo qemu-i386-static;; aarch64) echo qemu-aarch64-static;;
                         armhf) echo qemu-arm-static;; x86_64) echo;; esac; }
make_var() { make -s --no-print-directory --eval="print-%: ; @echo \$(\$*)" "print-$1"; }
SRC=$(make_var SRC); TEST_SRC=$(make_var TEST_SRC)
WARN="-std=c11 -Wall -Wextra -pedantic -Werror"

# build TARGET OMP: $PORT_DIR/TARGET-ompOMP/{gfn,run_tests}; the compiler's messages in build.log.
build() {
    t=$1; omp=$2; d="$PORT_DIR/$t-omp$omp"; mkdir -p "$d"
    if [ "$t" = x86_64 ]; then cc=${CC:-cc}; static=; else cc=$(triple "$t")-gcc; static=-static; fi
    if [ "$omp" = 1 ]; then flags=-fopenmp; else flags=-Wno-unknown-pragmas; fi
    [ "$t" = i686sse ] && flags="$flags -msse2 -mfpmath=sse"
    ok=1
    { $cc --version | head -1
      $cc -O3 $flags $WARN $static -o "$d/gfn" $SRC main.c -lm || ok=0
      $cc -O3 $flags $WARN $static -o "$d/run_tests" $SRC $TEST_SRC tests/runner.c -lm || ok=0; } > "$d/build.log" 2>&1
    [ $ok = 1 ] && echo ok > "$d/build.status" || echo FAILED > "$d/build.status"
    echo "build $t OMP=$omp: $(cat "$d/build.status") ($(head -1 "$d/build.log"))"
}

run_on() { t=$1; shift; e=$(emulator "$t"); if [ -n "$e" ]; then $e "$@"; else "$@"; fi; }

# The fixed-seed sample (temperature 0.8, 3 rows), the greedy one (--top-k 1), and the log-probabilities the
# model gives each token of the x86-64 greedy text (9 significant digits): byte-compared with the
# x86-64 build (ARCH=, OpenMP off); where they differ, the first differing token is named.
sample() {
    t=$1; omp=$2; d="$PORT_DIR/$t-omp$omp"; ref="$PORT_DIR/x86_64-omp0"
    [ -x "$d/gfn" ] || return 0
    m="-m weights/base.ckpt -t weights/tokenizer.bin"
    run_on "$t" "$d/gfn" sample $m -p "Once upon a time" -n 3 -T 0.8 -s 1 -l 48 > "$d/sample.txt" 2>&1
    run_on "$t" "$d/gfn" sample $m -p "Once upon a time" -n 1 --top-k 1 -l 48 > "$d/greedy.txt" 2>&1
    if [ "$t" = x86_64 ] && [ "$omp" = 0 ]; then   # the reference: the ids of prompt + greedy text
        { printf 'Once upon a time'; cat "$d/greedy.txt"; } | "$d/gfn" tokenize -t weights/tokenizer.bin 2>/dev/null | tr '\n' ' ' > "$d/ids.txt"
        echo >> "$d/ids.txt"
    fi
    run_on "$t" "$d/gfn" score -m weights/base.ckpt --ids "$ref/ids.txt" > "$d/logprobs.txt" 2>&1
    verdict=""
    for f in sample greedy logprobs; do
        if cmp -s "$d/$f.txt" "$ref/$f.txt"; then verdict="$verdict $f=identical"
        else verdict="$verdict $f=DIFFERS"; fi
    done
    # The first token whose log-probability differs, and the largest difference.
    diff_at=$(awk 'NR==FNR && /^logprobs/ { for (i = 2; i <= NF; i++) a[i] = $i; next }
                   /^logprobs/ { for (i = 2; i <= NF; i++) { d = a[i] - $i; if (d < 0) d = -d;
                                 if (d > 0 && !first) first = i - 1; if (d > m) m = d } }
                   END { if (first) printf "first differing log-prob at token %d, largest difference %.3g", first, m;
                         else printf "all log-probs equal to 9 digits" }' "$ref/logprobs.txt" "$d/logprobs.txt")
    echo "$verdict; $diff_at" > "$d/sample.status"
    echo "sample $t OMP=$omp:$verdict; $diff_at"
}

# The whole suite under qemu; the last line is "N passed, N failed, N skipped".
suite() {
    t=$1; omp=$2; d="$PORT_DIR/$t-omp$omp"
    [ -x "$d/run_tests" ] || return 0
    start=$(date +%s)
    echo "running" > "$d/test.status"
    # Each target runs in its own folder (the tests write scratch files into the current one),
    # with links to the fixtures, the weights and the data the suite reads from there.
    w="$d/work"; rm -rf "$w"; mkdir -p "$w"
    for x in tests weights; do ln -s "$PWD/$x" "$w/$x"; done
    for x in ${GFN_DATA:-} data ../shared/data; do [ -d "$x" ] && { ln -s "$(cd "$x" && pwd)" "$w/data"; break; }; done
    # ./gfn for the bad-input suite (it runs the command line through system()): the target's
    # build, under its emulator
    e=$(emulator "$t")
    printf '#!/bin/sh\nexec %s "%s" "$@"\n' "$e" "$d/gfn" > "$w/gfn"; chmod +x "$w/gfn"
    (cd "$w" && run_on "$t" "$d/run_tests" ${SUITES:-}) > "$d/test.log" 2>&1
    rc=$?
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' "$d/test.log" | tail -1)
    echo "${line:-no summary (exit $rc)} in $(( $(date +%s) - start )) s" > "$d/test.status"
    echo "test $t OMP=$omp: $(cat "$d/test.status")"; grep -E '^(FAIL|SKIP)' "$d/test.log" | head -20
}

# A suite still running (or stopped): the suites finished so far, and the one it is in.
progress() {
    log="$1/test.log"; st=$(cat "$1/test.status" 2>/dev/null || echo 'not run')
    [ "$st" = running ] || { echo "$st"; return; }
    echo "unfinished: suites ok: $(grep -E '^   [a-z]+: ok$' "$log" | sed 's/: ok//' | tr -d ' ' | paste -sd, -)" \
         "failed: $(grep -E '^   [a-z]+: FAILED$' "$log" | sed 's/: FAILED//' | tr -d ' ' | paste -sd, - | sed 's/^$/none/')" \
         "($(grep -c '^FAIL' "$log") checks), in: $(grep '^== ' "$log" | tail -1 | sed 's/== //')"
}

table() {
    echo "| target | compiler | OpenMP | build (-Werror, static) | tests under qemu-user | sample vs x86-64 |"
    echo "|---|---|---|---|---|---|"
    for t in x86_64 $ALL; do for omp in 1 0; do
        d="$PORT_DIR/$t-omp$omp"; [ -e "$d/build.status" ] || continue
        echo "| $t | $(head -1 "$d/build.log" | sed 's/ (Debian[^)]*)//') | $([ $omp = 1 ] && echo on || echo off) | $(cat "$d/build.status")" \
             "| $(progress "$d") | $(cat "$d/sample.status" 2>/dev/null || echo 'not run') |"
    done; done
}

case $MODE in
    build) for omp in 0 1; do [ -e "$PORT_DIR/x86_64-omp$omp/build.status" ] || build x86_64 $omp; done
           for t in $TARGETS; do for omp in 1 0; do build "$t" $omp; done; done ;;
    sample) [ -e "$PORT_DIR/x86_64-omp0/ids.txt" ] || { sample x86_64 0; sample x86_64 1; }
            for t in $TARGETS; do for omp in ${SAMPLE_OMP:-0 1}; do sample "$t" $omp; done; done ;;
    test) for omp in ${TESTS_OMP:-0 1}; do for t in $TARGETS; do suite "$t" $omp; done; done ;;
    table) table ;;
    all) "$0" build $TARGETS && "$0" sample $TARGETS && "$0" test $TARGETS && "$0" table ;;
    *) echo "usage: $0 build|sample|test|table|all [TARGET...]" >&2; exit 2 ;;
esac
