#!/usr/bin/env python3
"""Does the base model prefer correct worked rationales? (issue 5, item 2; dev-only, not run by make)

For training questions (the paper's 1000 question/answer pairs, minus any that appear in a test
file; their worked rationales written out here as the calculator would), with a 3-shot prompt
(three worked examples, one a line) in front, compares
    log p(Y | prompt, X, correct rationale)   and   log p(Y | prompt, X, corrupted rationale)
where Y = ". The answer is A." and the corrupted rationale has its last computed value changed
(by +-1..3), so that it no longer ends in A. Uses ./gfn tokenize and ./gfn score only.

usage: scripts/arith_discrimination.py GFN MODEL TOKENIZER DATA_DIR [N]
"""
import json, random, subprocess, sys

gfn, model, tok, data = sys.argv[1:5]
n = int(sys.argv[5]) if len(sys.argv) > 5 else 40
rows = json.load(open(f"{data}/arithmetic/1digit_34_op+-_hw.json"))
tests = set()
for k in ("3", "4", "5", "34"):
    tests |= {r["str_query"] for r in json.load(open(f"{data}/arithmetic/1digit_{k}_op+-_test.json"))}
rows = [r for r in rows if r["str_query"] not in tests]
for r in rows:   # "Question: 9 - 3 + 6 - 1 = ? Answer:" -> "9 - 3 = 6, 6 + 6 = 12, 12 - 1 = 11"
    terms = r["str_query"].split(":")[1].split("=")[0].split()
    value, steps = int(terms[0]), []
    for op, b in zip(terms[1::2], terms[2::2]):
        new = value + int(b) if op == "+" else value - int(b)
        steps.append(f"{value} {op} {b} = {new}")
        value = new
    assert value == r["num_sol"]
    r["str_rationale"] = ", ".join(steps)
shots, questions = rows[:3], rows[3:3 + n]
rng = random.Random(1)

def worked(r, rationale=None):
    return f'{r["str_query"]} {rationale or r["str_rationale"]}{r["str_sol"]}'

def encode(lines):
    out = subprocess.run([gfn, "tokenize", "-t", tok], input="\n".join(lines) + "\n", capture_output=True,
                         text=True, check=True).stdout.strip("\n").split("\n")
    return [[int(t) for t in o.split()] for o in out]

prompt_ids = []
for line in encode([worked(s) for s in shots]):
    prompt_ids += line + [10]          # id 10 is the byte "\n" (our tokenizer's first 256 ids are bytes)

cases = []   # (ids, first answer position)
for r in questions:
    head, _, last = r["str_rationale"].rpartition("= ")
    wrong = str(int(last) + rng.choice([-3, -2, -1, 1, 2, 3]))
    for rationale in (r["str_rationale"], head + "= " + wrong):
        prefix, full = encode([f'{r["str_query"]} {rationale}', f'{r["str_query"]} {rationale}{r["str_sol"]}'])
        assert full[:len(prefix)] == prefix
        cases.append((prompt_ids + full, len(prompt_ids) + len(prefix)))

with open("/tmp/arith_disc_ids.txt", "w") as f:
    for ids, _ in cases:
        f.write(" ".join(map(str, ids)) + "\n")
out = subprocess.run([gfn, "score", "-m", model, "--ids", "/tmp/arith_disc_ids.txt"], capture_output=True, text=True,
                     check=True).stdout.split("\n")
logprobs = [list(map(float, l.split()[1:])) for l in out if l.startswith("logprobs")]
answer_lp = [sum(lp[start - 1:]) for (ids, start), lp in zip(cases, logprobs)]   # lp[t] = log p(id[t+1] | ...)
correct, corrupted = answer_lp[0::2], answer_lp[1::2]
wins = sum(c > w for c, w in zip(correct, corrupted))
print(f"questions {len(correct)}")
print(f"mean log p(Y | correct rationale)   {sum(correct) / len(correct):.3f}")
print(f"mean log p(Y | corrupted rationale) {sum(corrupted) / len(corrupted):.3f}")
print(f"correct preferred {wins}/{len(correct)}")
