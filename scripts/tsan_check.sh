#!/bin/sh
# scripts/tsan_check.sh LOG... — the verdict of `make tsan` from ThreadSanitizer's report files.
# A report whose memory is a heap block that the OpenMP runtime itself allocated (malloc's caller in
# libomp) is libomp recycling a
# finished task's descriptor for a new one: the finished task read its captured arguments there,
# the creating thread writes the new task's, and the runtime's own synchronisation between the
# two (lock-free free lists, not instrumented) is invisible to TSan; archer (LLVM 14, and 19) does
# not annotate it. Those are counted and shown once; any other report fails the check.
[ $# -gt 0 ] && [ -e "$1" ] || { echo "tsan: no report files: no data race reported"; exit 0; }
awk '
    /^WARNING: ThreadSanitizer:/ { if (inrep) done(); inrep = 1; runtime = 0; loc = 0; first = $0; text = ""; next }
    inrep && /Location is heap block/ { loc = 1 }
    inrep && loc == 1 && /^ *#0 / { loc = 2 }
    inrep && loc == 2 && /^ *#1 / { runtime = /libomp\.so/; loc = 0 }   # malloc called by libomp itself
    inrep && /^SUMMARY:/ { summary = $0 }
    inrep && /^=+$/ { done(); next }
    inrep { text = text "\n" $0 }
    function done() {
        if (runtime) { nrt++; if (!shown_rt++) rt_example = summary }
        else { nother++; print first text }
        inrep = 0
    }
    END {
        if (inrep) done()
        printf "tsan: %d report(s) on memory the OpenMP runtime recycles between tasks (not races of ours; e.g. %s), %d other(s)\n", nrt, rt_example, nother
        exit nother > 0
    }' "$@"
