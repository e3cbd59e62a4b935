"""Synthetic math/trace generators (verified answers) and the FIM transform."""
import fractions
import re

import numpy as np
import pytest

from midtrain_jax.data.load import fim
from midtrain_jax.data.mixtures.corpora import synthetic

_IDS = fim.FimIds(prefix=4, middle=5, suffix=6)


def test_math_answers_verify_and_wrong_answers_do_not():
  docs = list(synthetic.math_documents(400, seed=3))
  assert len(docs) == 400
  kinds = {d["text"].split()[1] for d in docs}
  assert len(kinds) >= 5  # Every generator contributes.
  for doc in docs:
    problem = doc["text"].split("\n")[0].removeprefix("Problem: ")
    assert doc["text"].endswith(f"Answer: {doc['answer']}")
    assert synthetic.verify_math(problem, doc["answer"])
    if "," in doc["answer"]:
      gcd, lcm = doc["answer"].split(", ")
      wrong = f"{gcd}, {int(lcm) * 2}"
    else:
      wrong = str(fractions.Fraction(doc["answer"]) + 1)
    assert not synthetic.verify_math(problem, wrong)


def test_traces_print_what_they_claim():
  for doc in synthetic.trace_documents(200, seed=5):
    program = re.search(r"```python\n(.*?)\n```", doc["text"], re.S).group(1)
    assert synthetic.run_program(program) == int(doc["answer"])
    assert doc["text"].endswith(f"The program prints {doc['answer']}.")
    assert "<think>" in doc["text"] and "</think>" in doc["text"]


def test_generators_are_deterministic():
  assert list(synthetic.math_documents(50, seed=1)) == list(synthetic.math_documents(50, seed=1))
  assert list(synthetic.math_documents(50, seed=1)) != list(synthetic.math_documents(50, seed=2))


def _doc(n=40):
  return np.concatenate([[2], np.arange(100, 100 + n), [1]]).astype(np.int32)


def test_fim_psm_and_spm_layouts_keep_every_token():
  tokens = _doc()
  seen = set()
  for seed in range(200):
    out = fim.apply_fim(tokens, np.random.default_rng(seed), rate=1.0, spm_rate=0.5,
                        ids=_IDS)
    assert out[0] == 2 and out[-1] == 1 and len(out) == len(tokens) + 3
    body = [t for t in out[1:-1] if t not in (4, 5, 6)]
    assert sorted(body) == list(range(100, 140))
    if out[1] == 4 and out[2] == 6:  # SPM: <PRE><SUF> suffix <MID> prefix middle
      seen.add("spm")
      mid = list(out).index(5)
      suffix, prefix_middle = out[3:mid], out[mid + 1:-1]
      assert list(prefix_middle) + list(suffix) == list(range(100, 140))
    else:  # PSM: <PRE> prefix <SUF> suffix <MID> middle
      seen.add("psm")
      suf, mid = list(out).index(6), list(out).index(5)
      prefix, suffix, middle = out[2:suf], out[suf + 1:mid], out[mid + 1:-1]
      assert list(prefix) + list(middle) + list(suffix) == list(range(100, 140))
  assert seen == {"psm", "spm"}


@pytest.mark.parametrize("rate", [0.0, 0.5, 1.0])
def test_fim_rate_is_respected_and_seeded(rate):
  tokens = _doc()
  outs = [fim.apply_fim(tokens, np.random.default_rng(s), rate=rate, spm_rate=0.5, ids=_IDS)
          for s in range(1000)]
  transformed = np.mean([len(o) != len(tokens) for o in outs])
  assert abs(transformed - rate) < 0.05
  again = fim.apply_fim(tokens, np.random.default_rng(7), rate=rate, spm_rate=0.5, ids=_IDS)
  assert np.array_equal(again, outs[7])
