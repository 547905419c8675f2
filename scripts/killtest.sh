#!/bin/sh
# scripts/killtest.sh — crash safety of `gfn pretrain` and `gfn train`, proven by force (a dev
# script, not part of `make test`; about a minute each). A tiny run that saves after every step is
# killed with SIGKILL at random moments, TRIALS times.
#
# pretrain mode (the default). After each kill:
#   1. the checkpoint OUT and the state OUT.state on disk are each byte-equal to the reference
#      file of some step (so they load and are an old or a new version, never a torn one), and the
#      checkpoint is the state's step or one save ahead of it (the order of the renames:
#      checkpoint first, state last); the kill may leave OUT.tmp / OUT.state.tmp behind;
#   2. resuming (`--resume OUT.state`, killed once more at random in half of the trials, then
#      resumed again) ends with OUT and OUT.state byte-identical (cmp) to an uninterrupted run,
#      and no *.tmp file is left.
# The reference files of every step come from separate runs from scratch with --stop-after K.
#
# train mode: `gfn train rng` (the built-in base, TB, the replay buffer seeded with the 101 valid
# answers) with --save A --save-every 1 --log L; the same checks on the adapter A and its state
# A.state (the adapter at the state's step or one save ahead), and the resumed run's A, A.state and
# its log (but the throughput figures) identical to the uninterrupted run's.
# Usage: scripts/killtest.sh [pretrain|train] [TRIALS]   (25; run from the repository root after `make gfn`)
set -eu
MODE=pretrain
case "${1:-}" in pretrain|train) MODE=$1; shift;; esac
TRIALS=${1:-25}
GFN=${GFN:-./gfn}
W=${KILLTEST_DIR:-/tmp/gfn_killtest.$$}
STEPS=30
rm -rf "$W"; mkdir -p "$W/ref"
export OMP_NUM_THREADS=1
# The corpus: this repository's documentation, as text.
cat README.md weights/README.md > "$W/corpus.txt"
FLAGS="-t weights/tokenizer.bin -i $W/corpus.txt --tokens $W/corpus.tokens --layers 1 --heads 2 --dim 32 --ctx 32
       --batch 4 --steps $STEPS --warmup 2 --save-every 1 --eval-every 0 --eval-chunks 0 --samples 0 --quiet --threads 1"
state_step() { od -An -tu4 -j80 -N4 "$1" | tr -d ' '; }   # the u32 "completed steps" of a state file

# Which reference step a file equals (0: none); $2 is the suffix (".bin", ".bin.state", ...).
which_step() {
    for k in $(seq 1 $STEPS); do cmp -s "$1" "$W/ref/$k$2" && { echo $k; return; }; done
    echo 0
}

# Kills the command in the background after a random delay in [0, RUN_MS] ms; prints 1 if the kill
# landed (the process was still running), 0 if it had finished.
run_and_kill() {
    "$@" > /dev/null 2>&1 &
    pid=$!
    delay=$(( $(od -An -tu4 -N4 /dev/urandom | tr -d ' ') % (RUN_MS + 1) ))
    sleep "$(printf '%d.%03d' $((delay / 1000)) $((delay % 1000)))"
    if kill -9 $pid 2>/dev/null; then wait $pid 2>/dev/null || true; echo 1; else wait $pid 2>/dev/null || true; echo 0; fi
}

if [ "$MODE" = train ]; then
    STEPS=12; EXT=.lora; WHAT=adapter
    RUN="$GFN train rng --loss tb --seed-answers 1 --steps $STEPS --batch 32 --k 8 --rank 2 --warmup 2 --save-every 1 -q"
    outputs() { echo "--save $1.lora --log $1.jsonl"; }   # the files of a run named $1
else
    EXT=.bin; WHAT=checkpoint
    RUN="$GFN pretrain $FLAGS"
    outputs() { echo "-o $1.bin"; }
fi
nolog() { sed 's/"tokens_per_s": [^,]*, //' "$1"; }   # a train log without its wall-clock figure

# The uninterrupted run, timed, and the reference pair of every step.
t0=$(date +%s%N)
$RUN $(outputs "$W/full") > /dev/null 2>&1
t1=$(date +%s%N)
RUN_MS=$(( (t1 - t0) / 1000000 ))
for k in $(seq 1 $STEPS); do
    $RUN --stop-after $k $(outputs "$W/ref/$k") > /dev/null 2>&1
done
cmp -s "$W/full$EXT" "$W/ref/$STEPS$EXT" && cmp -s "$W/full$EXT.state" "$W/ref/$STEPS$EXT.state" ||
    { echo "FAIL: the run stopped at the last step differs from the full run"; exit 1; }
printf '1 2 3\n' > "$W/ids.txt"
if [ "$MODE" = train ]; then $GFN sample --task rng -a "$W/ref/1.lora" -n 1 > /dev/null 2>&1
else $GFN score -m "$W/ref/1.bin" --ids "$W/ids.txt" > /dev/null; fi || { echo "FAIL: a reference $WHAT does not load"; exit 1; }
echo "killtest $MODE: uninterrupted run ${RUN_MS} ms ($STEPS steps, a save after each); $TRIALS trials"

# Checks the files after a kill; sets BAD on a violation.
check_pair() {
    out="$W/t/m$EXT"
    if [ ! -e "$out.state" ]; then   # killed before the first state: at most the step-1 file
        if [ -e "$out" ]; then
            if cmp -s "$out" "$W/ref/1$EXT"; then AHEAD=$((AHEAD + 1)); else echo "FAIL trial $1: a $WHAT, no state"; BAD=1; fi
        fi
        return 0
    fi
    s=$(which_step "$out.state" $EXT.state); c=$(which_step "$out" $EXT)
    ss=$s; [ "$MODE" = pretrain ] && ss=$(state_step "$out.state")
    if [ "$s" = 0 ] || [ "$c" = 0 ]; then echo "FAIL trial $1: a file on disk is no version (state $s, $WHAT $c)"; BAD=1
    elif [ "$ss" != "$s" ]; then echo "FAIL trial $1: state says step $ss, equals step $s"; BAD=1
    elif [ "$c" != "$s" ] && [ "$c" != $((s + 1)) ]; then echo "FAIL trial $1: $WHAT step $c beside state step $s"; BAD=1
    else
        [ "$c" = "$s" ] && SAME=$((SAME + 1)) || AHEAD=$((AHEAD + 1))
    fi
    for f in "$out.tmp" "$out.state.tmp"; do [ -e "$f" ] && TMPS=$((TMPS + 1)); done
    return 0
}

BAD=0; KILLS=0; MISSED=0; SAME=0; AHEAD=0; TMPS=0; NOSTATE=0; FIRST_FRESH=0
for trial in $(seq 1 "$TRIALS"); do
    rm -rf "$W/t"; mkdir -p "$W/t"
    landed=$(run_and_kill $RUN $(outputs "$W/t/m"))
    if [ "$landed" = 1 ]; then KILLS=$((KILLS + 1)); else MISSED=$((MISSED + 1)); fi
    check_pair $trial
    if [ "$trial" -le $((TRIALS / 2)) ] && [ -e "$W/t/m$EXT.state" ]; then   # kill the resumed run too
        landed=$(run_and_kill $RUN $(outputs "$W/t/m") --resume "$W/t/m$EXT.state")
        if [ "$landed" = 1 ]; then KILLS=$((KILLS + 1)); else MISSED=$((MISSED + 1)); fi
        check_pair $trial
    fi
    if [ -e "$W/t/m$EXT.state" ]; then
        $RUN $(outputs "$W/t/m") --resume "$W/t/m$EXT.state" > "$W/t/resume.log" 2>&1 || { echo "FAIL trial $trial: resume failed"; cat "$W/t/resume.log"; BAD=1; }
    else   # killed before the first save: nothing to resume, start again
        NOSTATE=$((NOSTATE + 1))
        $RUN $(outputs "$W/t/m") > "$W/t/resume.log" 2>&1 || { echo "FAIL trial $trial: rerun failed"; BAD=1; }
    fi
    grep -q "rewriting it from the state" "$W/t/resume.log" && FIRST_FRESH=$((FIRST_FRESH + 1))
    if ! cmp -s "$W/t/m$EXT" "$W/full$EXT" || ! cmp -s "$W/t/m$EXT.state" "$W/full$EXT.state"; then
        echo "FAIL trial $trial: the resumed run differs from the uninterrupted one"; BAD=1
    fi
    if [ "$MODE" = train ] && [ "$(nolog "$W/t/m.jsonl")" != "$(nolog "$W/full.jsonl")" ]; then
        echo "FAIL trial $trial: the resumed log differs from the uninterrupted one"; BAD=1
    fi
    ls "$W/t" | grep -q '\.tmp$' && { echo "FAIL trial $trial: a .tmp file left after the resumed run"; BAD=1; }
done
echo "killtest $MODE: $KILLS kill -9 landed during a run ($MISSED came after it had finished); the files after each of the $((KILLS + MISSED)):"
if [ "$MODE" = train ]; then REPAIR="every resume writes the adapter again from its state"; else REPAIR="repaired at resume: $FIRST_FRESH runs"; fi
echo "  pairs consistent: $SAME, $WHAT one save ahead of its state: $AHEAD ($REPAIR)"
echo "  killed before the first save (no files): $NOSTATE; stale .tmp files found after a kill: $TMPS (all removed by the next run)"
echo "  resumed runs bit-identical (cmp $WHAT and state$([ "$MODE" = train ] && echo ", and the log")) to the uninterrupted run: $([ $BAD = 0 ] && echo "all $TRIALS" || echo NO)"
rm -rf "$W"
[ $BAD = 0 ] && echo "killtest $MODE: OK" || { echo "killtest $MODE: FAILED"; exit 1; }
