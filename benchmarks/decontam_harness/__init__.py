"""Held-out robustness suite for the decontaminator: real items, realistic edits.

Real benchmark items are planted into ordinary text the ways leaks happen in
training data and scanned with an index of every benchmark item except a
held-out clean pool; `benchmarks/decontam_robustness.py` prints the outcome
and tests/decontam/test_robustness.py bounds it. The parts:

  plain_words.py  texts measured in the suite's own plain words, never with
                  the tokenizer under test;
  splits.py       which items are tuned on, tested on or held out as clean
                  text, and the suite's index;
  edits.py        the edit kinds: an item -> a document that leaks it;
  code_families.py, textbook.py, math_tutorial.py
                  clean educational text written like benchmark solutions:
                  textbook functions in several styles, utility modules,
                  code tutorials, math lessons;
  cases.py        planted and clean documents of one split;
  report.py       scanning the documents: recall and false positives, one
                  split or tune and test side by side.

Rules are chosen on the tune split; the test split is only reported.

Pure Python and numpy; of midtrain_jax it uses the benchmark items and the
decontaminator it measures.
"""
