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


def _doc(n=40, with_bos=True):
  return np.concatenate([[2] if with_bos else [], np.arange(100, 100 + n), [1]]).astype(np.int32)


@pytest.mark.parametrize("with_bos", [True, False])
def test_fim_psm_and_spm_layouts_keep_every_token(with_bos):
  """With BOS, it stays first; without (a tokenizer that adds none), the example
  starts with <PRE> and the document's first token is text like any other."""
  tokens = _doc(with_bos=with_bos)
  body_ids = list(range(100, 140))
  if not with_bos:  # A first token equal to the BOS id (2) is text here, not a BOS.
    tokens[0], body_ids[0] = 2, 2
  head = [2] if with_bos else []
  seen = set()
  for seed in range(200):
    out = fim.apply_fim(tokens, np.random.default_rng(seed), rate=1.0, spm_rate=0.5,
                        ids=_IDS, with_bos=with_bos)
    assert list(out[:len(head)]) == head and out[-1] == 1 and len(out) == len(tokens) + 3
    rest = list(out[len(head):-1])
    assert rest[0] == 4  # <PRE> right after the document's start.
    body = [t for t in rest if t not in (4, 5, 6)]
    assert sorted(body) == sorted(body_ids)
    if rest[1] == 6:  # SPM: <PRE><SUF> suffix <MID> prefix middle
      seen.add("spm")
      mid = rest.index(5)
      suffix, prefix_middle = rest[2:mid], rest[mid + 1:]
      assert prefix_middle + suffix == body_ids
    else:  # PSM: <PRE> prefix <SUF> suffix <MID> middle
      seen.add("psm")
      suf, mid = rest.index(6), rest.index(5)
      prefix, suffix, middle = rest[1:suf], rest[suf + 1:mid], rest[mid + 1:]
      assert prefix + middle + suffix == body_ids
  assert seen == {"psm", "spm"}


@pytest.mark.parametrize("rate", [0.0, 0.5, 1.0])
def test_fim_rate_is_respected_and_seeded(rate):
  tokens = _doc()
  outs = [fim.apply_fim(tokens, np.random.default_rng(s), rate=rate, spm_rate=0.5, ids=_IDS,
                        with_bos=True) for s in range(1000)]
  transformed = np.mean([len(o) != len(tokens) for o in outs])
  assert abs(transformed - rate) < 0.05
  again = fim.apply_fim(tokens, np.random.default_rng(7), rate=rate, spm_rate=0.5, ids=_IDS,
                        with_bos=True)
  assert np.array_equal(again, outs[7])
