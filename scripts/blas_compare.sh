#!/bin/sh
# scripts/blas_compare.sh — dev only: our matmul against OpenBLAS's sgemm on this machine, in one run
# (issue 13's "matmul >= 90 % of OpenBLAS at 256x768x3072"). Needs OpenBLAS's headers and library
# (Debian: libopenblas0-pthread and libopenblas-pthread-dev). OpenBLAS is measured with the core type it detects itself
# (OPENBLAS_CORETYPE unset) and forced to SkylakeX (its AVX-512 kernels); the better one is the
# reference. Two rounds, interleaved, best of both; 1 and 2 threads.
#
#   scripts/blas_compare.sh [CFLAGS...]      (default: the Makefile's -O3 -march=native)
set -e
cd "$(dirname "$0")/.."
out=${TMPDIR:-/tmp}/gfn_blas_compare
mkdir -p "$out"
flags=${*:--O3 -march=native}
cc $flags -fopenmp -std=c11 -o "$out/blas_compare" scripts/blas_compare.c util.c model.c -lopenblas -lm
: > "$out/raw.txt"
for round in 1 2; do
  for t in 1 2; do
    OMP_NUM_THREADS=$t "$out/blas_compare" ours $t | sed 's/^/ours /' >> "$out/raw.txt"
    env -u OPENBLAS_CORETYPE "$out/blas_compare" openblas $t | sed 's/^/detected /' >> "$out/raw.txt"
    OPENBLAS_CORETYPE=SkylakeX "$out/blas_compare" openblas $t | sed 's/^/skylakex /' >> "$out/raw.txt"
  done
done
echo "GFLOP/s, M = 256, best of 2 rounds (fwd / bwd_inp / bwd_wt); ours with: $flags"
awk '{ key = $1 " " $3 " " $4; for (i = 0; i < 3; i++) if ($(5 + i) > best[key, i]) best[key, i] = $(5 + i)
       if (!($4 in seen)) { seen[$4] = 1; order[++n] = $4 } }
     END {
       printf "%-22s %3s  %-20s %-20s %-20s %s\n", "shape (K x N)", "thr", "ours", "OpenBLAS (detected)", "OpenBLAS (SkylakeX)", "ours / best OpenBLAS"
       for (k = 1; k <= n; k++) for (t = 1; t <= 2; t++) {
         s = order[k]; line = ""
         for (i = 0; i < 3; i++) {
           o = best["ours " t " " s, i]; d = best["detected " t " " s, i]; x = best["skylakex " t " " s, i]
           line = line sprintf(" %4.0f%%", 100 * o / (d > x ? d : x))
         }
         printf "%-22s %3d  %6.1f %6.1f %6.1f  %6.1f %6.1f %6.1f  %6.1f %6.1f %6.1f %s\n", s, t,
           best["ours " t " " s, 0], best["ours " t " " s, 1], best["ours " t " " s, 2],
           best["detected " t " " s, 0], best["detected " t " " s, 1], best["detected " t " " s, 2],
           best["skylakex " t " " s, 0], best["skylakex " t " " s, 1], best["skylakex " t " " s, 2], line
       }
     }' "$out/raw.txt"
