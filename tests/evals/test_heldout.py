"""Held-out bits per byte of a sample of the split: exact bytes, no bias, same every time.

The splits here are synthetic: document i of a task is token i + 1 repeated,
so a stub eval_fn can give every document its own loss per byte. Half the
documents are long (split into several rows, some longer than a batch), half
short, with different bytes per token and, where it matters, different loss
per byte: the cases where scoring longest pieces first and scaling the
split's bytes by token share was biased.
"""
import math
import shutil

import numpy as np
import pytest

from midtrain_jax import config as config_lib
from midtrain_jax.data import layout
from midtrain_jax.data.load import heldout_batches
from midtrain_jax.evals import heldout
from midtrain_jax.evals.scoring import LN2

SEQ_LEN, BATCH = 32, 8
MIXTURE = "web_only"
TASKS = ("web_c4", "web_wikipedia", "web_openwebtext")


def _split(seed: int, n: int, loss_long: float, loss_short: float) -> dict[str, np.ndarray]:
  """Pairs, UTF-8 bytes and summed loss (nats) of each of `n` documents."""
  rng = np.random.default_rng(seed)
  long = rng.random(n) < 0.5
  pairs = np.where(long, rng.integers(40, 150, n), rng.integers(3, 13, n))
  long[::25], pairs[::25] = True, rng.integers(260, 400, len(pairs[::25]))  # Over a batch.
  doc_bytes = pairs * np.where(long, 2, 6) + rng.integers(0, 4, n)
  return dict(pairs=pairs, bytes=doc_bytes, long=long,
              nats=np.where(long, loss_long, loss_short) * doc_bytes)


def _docs(split) -> list[np.ndarray]:
  return [np.full(p + 1, i + 1, np.int32) for i, p in enumerate(split["pairs"])]


def _eval_fn(splits: dict[str, dict]):
  """A stub model: each target of document i costs its nats / its pairs."""
  width = max(len(s["pairs"]) for s in splits.values()) + 1
  table = np.zeros((len(TASKS), width))
  for t, task in enumerate(TASKS):
    s = splits[task]
    table[t, 1:len(s["pairs"]) + 1] = s["nats"] / s["pairs"]

  def fn(batch):
    mask = batch["segment_ids"] > 0
    return {"nats": table[batch["task_ids"][mask], batch["targets"][mask]].sum(),
            "tokens": float(mask.sum())}
  return fn


def _prepare(root, splits: dict[str, dict]):
  """A prepared folder holding only what held-out evaluation reads."""
  for task, s in splits.items():
    task_dir = root / task
    task_dir.mkdir(parents=True)
    layout.write_heldout(task_dir, _docs(s), list(s["bytes"]))
    layout.write_stats(task_dir, dict(task=task, heldout_docs=len(s["pairs"]),
                                      heldout_bytes=int(s["bytes"].sum())))
  cfg = config_lib.data_config()
  layout.write_manifest(root, dict(tokenizer=cfg.tokenizer, pad_id=0))
  cfg.update(mixture=MIXTURE, data_dir=str(root), prepare_if_missing=False,
             seq_len=SEQ_LEN, batch_size=BATCH)
  return cfg


def _full_bpb(split) -> float:
  return split["nats"].sum() / LN2 / split["bytes"].sum()


@pytest.fixture(scope="module")
def same_loss_per_byte(tmp_path_factory):
  """Every document costs 0.8 nats per byte; bytes per token differ by length."""
  splits = {task: _split(i, 300, 0.8, 0.8) for i, task in enumerate(TASKS)}
  return splits, _prepare(tmp_path_factory.mktemp("same"), splits)


@pytest.fixture(scope="module")
def loss_by_length(tmp_path_factory):
  """Long documents cost 1 nat per byte, short ones 3."""
  splits = {task: _split(10 + i, 400, 1.0, 3.0) for i, task in enumerate(TASKS)}
  return splits, _prepare(tmp_path_factory.mktemp("by_length"), splits)


def test_sample_bytes_are_exact(same_loss_per_byte):
  """Loss per byte is one constant: any whole-document sample gives it exactly,
  where scaling the split's bytes by the sample's token share did not."""
  splits, cfg = same_loss_per_byte
  eval_fn = _eval_fn(splits)
  for max_batches in (0, 1, 3):
    results = heldout.heldout_bpb(eval_fn, cfg, max_batches=max_batches)
    for task, r in results.items():
      s = splits[task]
      assert math.isclose(r["bpb"], 0.8 / LN2, rel_tol=1e-9)
      batches = heldout_batches.make_eval_iterator(cfg, task, max_batches=max_batches)
      docs = batches.doc_indices
      assert r["docs"] == len(docs) and r["bytes"] == s["bytes"][docs].sum()
      assert r["tokens"] == s["pairs"][docs].sum() == batches.num_tokens
      if max_batches:
        assert len(docs) < len(s["pairs"]) and batches.num_batches <= max_batches + 2
        # The split's bytes times the sample's token share was not the sample's size.
        token_share = s["bytes"].sum() * r["tokens"] / s["pairs"].sum()
        assert abs(token_share / r["bytes"] - 1) > 1e-3


def test_sample_estimate_is_unbiased_over_orders():
  """Mean over 400 random orders of the 4-batch estimate = the full split's BPB.

  Each order gives an independent estimate, so their mean has standard error
  sd / sqrt(400). What remains of a ratio estimator's O(1/m) bias (m ~ 20
  documents here) is far smaller with this stopping rule (the document that
  crosses the end of batch 4 is included); 4 standard errors bound the mean.
  Longest-first order put long documents (1 nat per byte) first: a figure
  near 1 / ln 2, many tolerances away.
  """
  s = _split(7, 600, 1.0, 3.0)
  docs, table = _docs(s), np.concatenate([[0.0], s["nats"] / s["pairs"]])
  full = _full_bpb(s)
  estimates = []
  for seed in range(400):
    order = np.random.default_rng(seed).permutation(len(docs))
    batches = heldout_batches.EvalBatches(docs, s["bytes"], order, seq_len=SEQ_LEN,
                                   batch_size=BATCH, pad_id=0, task_id=0, max_batches=4)
    nats = sum((table[b["targets"]] * (b["segment_ids"] > 0)).sum() for b in batches)
    estimates.append(nats / LN2 / batches.num_bytes)
  tolerance = 4 * np.std(estimates) / math.sqrt(len(estimates))
  assert abs(np.mean(estimates) - full) < tolerance
  long_first = s["nats"][s["long"]].sum() / LN2 / s["bytes"][s["long"]].sum()
  assert abs(long_first - full) > 10 * tolerance


def test_sample_matches_full_split_within_sampling_error(loss_by_length):
  """One seeded sample (8 batches, ~30 documents) against the whole split.

  The sample BPB is a ratio estimator over m documents drawn without
  replacement from n: its standard deviation is about
  sqrt((1 - m / n) * var(e) / m) / mean(bytes), with e = nats - F * bytes per
  document and F the full split's loss per byte.
  """
  splits, cfg = loss_by_length
  eval_fn = _eval_fn(splits)
  full = heldout.heldout_bpb(eval_fn, cfg)
  sample = heldout.heldout_bpb(eval_fn, cfg, max_batches=8)
  assert sample == heldout.heldout_bpb(eval_fn, cfg, max_batches=8)  # Same order each time.
  for task, s in splits.items():
    assert math.isclose(full[task]["bpb"], _full_bpb(s), rel_tol=1e-9)
    n, m = len(s["pairs"]), sample[task]["docs"]
    e = s["nats"] - s["nats"].sum() / s["bytes"].sum() * s["bytes"]
    sd = math.sqrt((1 - m / n) * e.var(ddof=1) / m) / s["bytes"].mean() / LN2
    assert 20 < m < n and abs(sample[task]["bpb"] - full[task]["bpb"]) < 4 * sd


@pytest.mark.parametrize("hosts", [2, 4])
def test_hosts_score_disjoint_rows_and_agree_on_the_totals(loss_by_length, hosts):
  splits, cfg = loss_by_length
  one = heldout_batches.make_eval_iterator(cfg, "web_c4", max_batches=3)
  per_host = [heldout_batches.make_eval_iterator(cfg, "web_c4", max_batches=3, process_index=p,
                                          process_count=hosts) for p in range(hosts)]
  for it in per_host:
    assert (it.num_batches, it.num_bytes, it.num_tokens) == (
        one.num_batches, one.num_bytes, one.num_tokens)
    np.testing.assert_array_equal(it.doc_indices, one.doc_indices)
  host_batches = [list(it) for it in per_host]
  assert all(len(b) == one.num_batches for b in host_batches)
  for k, whole in enumerate(one):  # The hosts' rows of batch k are its rows, once each.
    for key, value in whole.items():
      np.testing.assert_array_equal(np.concatenate([b[k][key] for b in host_batches]), value)

  # heldout_bpb on every host, its eval_fn summing over all hosts (as the jitted step does).
  local = _eval_fn(splits)
  calls = [[] for _ in range(hosts)]
  for p in range(hosts):
    heldout.heldout_bpb(lambda b, p=p: calls[p].append(local(b)) or local(b), cfg,
                        max_batches=3, process_index=p, process_count=hosts)
  assert len({len(c) for c in calls}) == 1  # Every host ran the same number of batches.
  summed = [{k: sum(c[i][k] for c in calls) for k in ("nats", "tokens")}
            for i in range(len(calls[0]))]
  expected = heldout.heldout_bpb(local, cfg, max_batches=3)
  for p in range(hosts):
    replay = iter(summed)
    got = heldout.heldout_bpb(lambda b, replay=replay: next(replay), cfg, max_batches=3,
                              process_index=p, process_count=hosts)
    for task, r in got.items():
      assert r["bytes"] == expected[task]["bytes"] and r["docs"] == expected[task]["docs"]
      assert math.isclose(r["bpb"], expected[task]["bpb"], rel_tol=1e-12)


def test_folder_without_document_bytes_falls_back_with_a_warning(loss_by_length, tmp_path,
                                                                  capsys):
  """Folders prepared before format 2: the whole split stays exact; a sample's
  bytes are the split's by token share, and a warning says how to re-prepare."""
  splits, cfg = loss_by_length
  old = cfg.copy_and_resolve_references()
  old.data_dir = str(tmp_path / "old")
  shutil.copytree(cfg.data_dir, old.data_dir)
  for task in TASKS:
    layout.heldout_bytes_file(tmp_path / "old" / task).unlink()
  eval_fn = _eval_fn(splits)
  full = heldout.heldout_bpb(eval_fn, old)
  assert "WARNING" not in capsys.readouterr().out
  for task, s in splits.items():
    assert math.isclose(full[task]["bpb"], _full_bpb(s), rel_tol=1e-9)
  sample = heldout.heldout_bpb(eval_fn, old, max_batches=2)
  out = capsys.readouterr().out
  assert out.count("WARNING") == len(TASKS) and "python -m midtrain_jax.data.prepare" in out
  s = splits["web_c4"]
  share = s["bytes"].sum() * sample["web_c4"]["tokens"] / s["pairs"].sum()
  assert math.isclose(sample["web_c4"]["bytes"], share, rel_tol=1e-9)
  heldout.heldout_bpb(eval_fn, old, max_batches=2)
  assert "WARNING" not in capsys.readouterr().out  # Once per folder and task.
