#!/bin/sh
# The exploration behind results/arithmetic/NOTES.md: 16 arithmetic runs (method, seed, prompt,
# learning rate, reward temperature, behaviour mix), 8 at a time with 2 threads each, on a
# 16-core machine (about 2 x 4 minutes there). Usage: scripts/arith_sweep.sh OUTDIR
# Dev-only; needs ./gfn, weights/ and the paper's files in data/arithmetic (make data).
set -e
OUT=${1:?usage: scripts/arith_sweep.sh OUTDIR}
mkdir -p "$OUT"
C="./gfn train arithmetic -m weights/base.ckpt -t weights/tokenizer.bin --data data/arithmetic --eval-n 50 --batch 16 --k 4 --rank 16 --lr 5e-4 -q"
F="--prompt fewshot --steps 120 --reward-temp 1.1,0.5,100"
run() { name=$1; shift; ( OMP_NUM_THREADS=2 $C "$@" > "$OUT/$name.txt" 2>&1 ) & }
run fs_subtb1 $F --loss subtb -s 1
run fs_subtb2 $F --loss subtb -s 2
run fs_sft1 $F --loss sft -s 1
run fs_sft2 $F --loss sft -s 2
run fs_rf1 $F --loss reinforce -s 1
run fs_rf2 $F --loss reinforce -s 2
run q_subtb1_300 --loss subtb -s 1 --steps 300 --reward-temp 1.1,0.5,150
run q_sft1_300 --loss sft -s 1 --steps 300 --reward-temp 1.1,0.5,150
wait
run fs_subtb3 $F --loss subtb -s 3
run fs_sft3 $F --loss sft -s 3
run fs_rf3 $F --loss reinforce -s 3
run fs_subtb1_lr2 $F --loss subtb -s 1 --lr 2e-4
run fs_subtb2_lr2 $F --loss subtb -s 2 --lr 2e-4
run fs_tb1 $F --loss tb -s 1
run fs_subtb1_t1 --prompt fewshot --steps 120 --loss subtb -s 1 --reward-temp 1,1,1
run fs_subtb2_onp $F --loss subtb -s 2 --on-policy 0.5 --tempered 0.25 --temp-lo 0.8 --temp-hi 1.5
wait
for f in "$OUT"/*.txt; do echo "$(basename "$f" .txt) $(grep -h '^acc_' "$f" | tr '\n' ' ')"; done
