"""The SFT probe end to end: from a demo anneal checkpoint, on the math chat target.

One short probe (6 steps, checkpoints every 2) is run once; the tests read it:
what it evaluated (held-out response BPB over exactly the response tokens
and bytes the preparation stored, the GSM8K score), that it learned, and that
resuming it from an earlier checkpoint ends bit-identical.
"""
import math
import os
import shutil

import grain
import numpy as np
import pytest

from benchmarks import kill_harness
from configs import sft as sft_config
from midtrain_jax.data import layout
from midtrain_jax.evals import heldout, scoring
from midtrain_jax.train import checkpoint, loop
from midtrain_jax.workflows import sft
from tests import helpers

TASK = "sft_math_synthetic"


def _config(base: str):
  c = sft_config.get_config(f"target=math,init={base}")
  c.unlock()
  c.data.update(seq_len=64, batch_size=8)
  c.optim.lr = 3e-3
  c.sft.update(epochs=0.0, benchmark_items=2, max_new_tokens=8)
  c.train.update(steps=6, log_every_steps=1)
  c.ckpt.update(every_steps=2, keep=3, async_save=False)
  c.eval.update(every_steps=0, batches=1)
  c.lock()
  return c


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
  base = str(tmp_path_factory.mktemp("anneal"))
  loop.run(helpers.small_config(2, schedule="anneal"), base)  # A demo anneal, 2 steps.
  workdir = str(tmp_path_factory.mktemp("sft"))
  config = _config(base)
  return base, workdir, config, sft.run(config, workdir)


def test_probe_scores_held_out_responses_and_the_benchmark(probe):
  _, workdir, config, results = probe
  assert results == sft.read_results(workdir) and results["steps"] == 6
  data_dir = layout.resolve_dir(sft.probe_config(config).data)
  scored_bytes = layout.read_heldout_scored_bytes(data_dir, TASK)
  masks = layout.mask_files(layout.shard_files(data_dir, TASK, "heldout"))
  r = results["heldout"][TASK]
  # Every held-out conversation, scored on its response tokens only, over their bytes.
  assert r["docs"] == len(scored_bytes) > 0
  assert r["bytes"] == sum(scored_bytes)
  source = grain.sources.ArrayRecordDataSource(masks)
  stored = [layout.decode_mask(source[i]) for i in range(len(source))]
  assert r["tokens"] == sum(int(m[1:].sum()) for m in stored)
  assert r["bpb"] == pytest.approx(r["loss"] * r["tokens"] / math.log(2) / r["bytes"])
  bench = results["benchmark"]
  assert bench["metric"] == "exact_match" and bench["n_items"] == 2
  assert 0 <= bench["score"] <= 1


def test_probe_learns_the_responses(probe):
  base, _, config, results = probe
  before = heldout.heldout_bpb(scoring.model_eval_fn(scoring.load_model(base)),
                               sft.probe_config(config).data)[TASK]
  assert results["heldout"][TASK]["bpb"] < before["bpb"] - 0.1
  assert results["heldout"][TASK]["tokens"] == before["tokens"]
  # The base, evaluated by the probe itself (sft.eval_base), scores the same.
  assert results["base"]["heldout"][TASK]["bpb"] == pytest.approx(before["bpb"], rel=1e-6)
  assert results["base"]["benchmark"]["n_items"] == 2


def test_probe_resumed_from_an_earlier_checkpoint_ends_bit_identical(probe, tmp_path):
  _, workdir, config, results = probe
  copy = str(tmp_path / "resumed")
  shutil.copytree(workdir, copy)
  for step in (4, 6):
    shutil.rmtree(f"{copy}/checkpoints/{step}")
  resumed = sft.run(config, copy)
  assert os.path.isdir(f"{copy}/checkpoints/6")  # Steps 3 to 6 ran again.
  assert kill_harness.same_params(copy, workdir)
  assert resumed["heldout"] == results["heldout"]
  assert np.isfinite(resumed["heldout"][TASK]["bpb"])


def test_probe_takes_the_model_and_tokenizer_of_a_soup(probe, tmp_path):
  base, _, _, _ = probe
  soup = str(tmp_path / "soup")
  checkpoint.soup([base, base], soup)
  config = sft.probe_config(_config(soup))
  stored = checkpoint.load_config(base)
  assert config.train.init_from == soup and not config.train.init_optimizer
  assert config.model.to_dict() == stored.model.to_dict()
  assert config.data.tokenizer == stored.data.tokenizer
