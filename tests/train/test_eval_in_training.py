"""Held-out evaluation inside training (`eval.every_steps`, `eval.batches`)."""
import math

import pytest

from midtrain_jax.train import loop
from midtrain_jax.workflows import training
from tests.helpers import small_config

pytestmark = pytest.mark.slow


def test_periodic_heldout_eval(tmp_path):
  c = small_config(4, mesh=(4, 2, 1))
  c.eval.update(every_steps=2, batches=1)
  c.data.mixture = "web_only"
  c.eval.mixture = "dolmino_demo"  # Score every capability of a web-only run.
  result = training.run(c, str(tmp_path))  # Prepares the eval mixture, evaluates held-out.
  assert sorted(result.evals) == [2, 4]
  for evaluation in result.evals.values():
    heldout = evaluation["heldout"]
    assert len(heldout) == 8 and all(math.isfinite(r["bpb"]) and r["bpb"] > 0
                                     for r in heldout.values())
  # Both evaluations score the same documents (a seeded order), so they compare.
  for task, r in result.evals[2]["heldout"].items():
    later = result.evals[4]["heldout"][task]
    assert (r["docs"], r["tokens"], r["bytes"]) == (later["docs"], later["tokens"],
                                                    later["bytes"])
  # Web is trained on, so its BPB falls between the two evaluations.
  web = lambda s: result.evals[s]["heldout"]["web_c4"]["bpb"]
  assert web(4) < web(2)


def test_anneal_with_base_optimizer_state_moves_params(tmp_path):
  """The base's optimiser state carries its schedule count; the anneal's
  schedule must still start at its own step 0 (else its LR is 0 throughout)."""
  import numpy as np

  from midtrain_jax.train import checkpoint
  base = small_config(6, schedule="wsd")
  base.optim.update(warmup_steps=1, decay_steps=2)
  loop.run(base, str(tmp_path / "base"))
  c = small_config(2, schedule="anneal")
  c.optim.anneal_start = "from_checkpoint"
  c.train.init_from = str(tmp_path / "base" / "checkpoints" / "3")
  loop.run(c, str(tmp_path / "anneal"))
  before, _, _ = checkpoint.load_params(c.train.init_from)
  after, _, _ = checkpoint.load_params(str(tmp_path / "anneal"))
  change = np.abs(after["lm_head"]["kernel"] - before["lm_head"]["kernel"]).max()
  assert change > 1e-4
