#!/usr/bin/env python3
"""Writes tests/fixtures/metrics_nltk.txt: BLEU-4 and GLEU of (reference, hypothesis) pairs as
nltk 3.8 computes them, the reference values that tests/test_eval.c checks eval.c against.

Dev-only (never run by `make test`): apt-get install python3-nltk, then from the repository root
    /usr/bin/python3 scripts/gen_metric_fixture.py
Tokens are str.split() of each string, case kept; BLEU-4 is sentence_bleu with the default
weights (1/4 each) and SmoothingFunction().method1; GLEU is sentence_gleu (n = 1..4).
chrF is not here: nltk's chrf_score averages per-order F-scores (not sacrebleu's definition that
eval.c implements) and sacrebleu is not packaged in Debian; test_eval.c checks chrF against
sacrebleu's published values and hand-computed cases instead.

Output: one line per pair, tab-separated: BLEU-4, GLEU (%.9f), reference, hypothesis.
"""
import os
import sys

import nltk
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
from nltk.translate.gleu_score import sentence_gleu

# (reference, hypothesis): no tabs or newlines inside.
PAIRS = [
    # the TASKS.md test vectors
    ("He went to the park with his dog", "He went to the store."),
    ("The cat sat on the mat", "the the the the the the the"),
    ("Tom decided to buy a new car", "Tom bought"),
    ("Tom decided to buy a new car", "a b c"),
    ("She was very happy", "She was very happy"),
    # empty hypothesis / reference, whitespace only
    ("She was very happy", ""),
    ("", "She was very happy"),
    ("", ""),
    ("She was very happy", "   "),
    # no overlap at all
    ("The cat sat on the mat", "A dog ran in a park"),
    ("one two three", "four five six seven eight nine"),
    # identical strings of several lengths
    ("a", "a"),
    ("a b", "a b"),
    ("a b c", "a b c"),
    ("It was a dark and stormy night, and the rain fell in torrents.",
     "It was a dark and stormy night, and the rain fell in torrents."),
    # case kept
    ("The Cat Sat", "the cat sat"),
    ("Hello world", "hello World"),
    # repeated tokens
    ("the cat the cat the cat", "the cat the cat"),
    ("the cat", "the cat the cat the cat"),
    ("a a a a", "a a a a a a a a"),
    ("a b a b a b a b", "a b a b"),
    ("x y z x y z", "x x x y y y z z z"),
    ("go go go", "go"),
    # short hypotheses (fewer than 4 tokens), one-token matches
    ("Tom decided to buy a new car", "Tom"),
    ("Tom decided to buy a new car", "car"),
    ("Tom decided to buy a new car", "Tom decided"),
    ("Tom decided to buy a new car", "Tom decided to"),
    ("Tom decided to buy a new car", "decided to buy"),
    ("Tom decided to buy a new car", "new car Tom"),
    ("a", "a b"),
    ("a b", "a"),
    # punctuation attached or separate
    ("He said, \"Yes!\"", "He said , \" Yes ! \""),
    ("Wait... what?!", "Wait ... what ? !"),
    ("It's 5:30 p.m. now.", "It's 5:30 p.m. now"),
    ("(a) [b] {c}", "(a) [b] {c} ."),
    ("I can't go.", "I can not go."),
    # longer sentences with partial overlap
    ("The children played in the garden until the sun went down behind the hills.",
     "The children played outside until the sun went down."),
    ("She opened the letter and began to cry because her grandmother had passed away.",
     "She read the letter and cried because her grandmother had died."),
    ("After the storm, the village worked together to rebuild the old bridge.",
     "The village rebuilt the old bridge together after the storm."),
    ("John forgot his keys so he had to wait outside for his wife to come home.",
     "John waited outside for his wife because he forgot his keys."),
    ("The team practiced every day and finally won the championship.",
     "Every day the team practiced, and they won the championship finally."),
    ("Maria baked a cake for her brother's birthday party.",
     "Maria baked a chocolate cake for the party of her brother."),
    ("He missed the bus and walked to work in the rain.",
     "He walked to work in the rain after he missed the bus."),
    ("The dog barked at the mailman every morning.",
     "Every morning the dog barked loudly at the mailman and the neighbours."),
    # hypothesis much longer than the reference
    ("Yes.", "Yes. Yes. Yes. Yes. Yes. Yes."),
    ("The end.", "And that was the end of the story, the very end."),
    # reordered words (unigrams match, higher orders do not)
    ("a b c d e f", "f e d c b a"),
    ("the quick brown fox", "fox brown quick the"),
    # numbers, non-ASCII text, extra inner whitespace, tabs excluded
    ("In 2019 he earned 3,000 dollars.", "In 2019 he earned 3000 dollars."),
    ("Café crème et pain au chocolat", "café crème et un pain au chocolat"),
    ("naïve   résumé  déjà vu", "naïve résumé déjà vu"),
    ("Ελληνικά κείμενα εδώ", "Ελληνικά κείμενα"),
]


def main():
    assert nltk.__version__.startswith("3.8"), "nltk 3.8 expected, found " + nltk.__version__
    smooth = SmoothingFunction().method1
    out_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures",
                            "metrics_nltk.txt")
    lines = []
    for ref, hyp in PAIRS:
        assert "\t" not in ref + hyp and "\n" not in ref + hyp
        r, h = ref.split(), hyp.split()
        bleu = sentence_bleu([r], h, smoothing_function=smooth)
        gleu = sentence_gleu([r], h)
        lines.append("%.9f\t%.9f\t%s\t%s\n" % (bleu, gleu, ref, hyp))
    tmp = out_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(lines)
    os.replace(tmp, out_path)
    print("wrote %d pairs to %s" % (len(lines), os.path.normpath(out_path)), file=sys.stderr)


if __name__ == "__main__":
    main()
