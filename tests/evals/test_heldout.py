"""Held-out bits per byte of a sample of the split: exact bytes, no bias, same every time.

The splits here are synthetic: document i of a task is token i + 1 repeated,
so a stub eval_fn can give every document its own loss per byte. Half the
documents are long (split into several rows, some longer than a batch), half
short, with different bytes per token and, where it matters, different loss
per byte: the cases where scoring longest pieces first and scaling the
split's bytes by token share was biased.

A stub that ignores context cannot tell how long documents are cut into rows;
a copy task can (a model that predicts a token from the one a period before
it, when that one is in its row): with overlapping windows its BPB is that of
whole documents at any seq_len.
"""
import functools
import math
import shutil

import jax
import numpy as np
import pytest

from midtrain_jax import config as config_lib
from midtrain_jax.data import layout
from midtrain_jax.data.load import heldout_batches, packing
from midtrain_jax.evals import heldout
from midtrain_jax.evals.scoring import LN2
from midtrain_jax.train import step as ts
from tests import helpers

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
    mask = batch["loss_mask"] > 0
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
  """Mean over 400 random orders of the 8-batch estimate = the full split's BPB.

  Each order gives an independent estimate, so their mean has standard error
  sd / sqrt(400). What remains of a ratio estimator's O(1/m) bias (m ~ 20
  documents here: long ones take about two rows per seq_len pairs, in
  overlapping windows) is far smaller with this stopping rule (the document
  that crosses the end of batch 8 is included); 4 standard errors bound the mean.
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
                                   batch_size=BATCH, pad_id=0, task_id=0, max_batches=8)
    nats = sum((table[b["targets"]] * b["loss_mask"]).sum() for b in batches)
    estimates.append(nats / LN2 / batches.num_bytes)
  tolerance = 4 * np.std(estimates) / math.sqrt(len(estimates))
  assert abs(np.mean(estimates) - full) < tolerance
  long_first = s["nats"][s["long"]].sum() / LN2 / s["bytes"][s["long"]].sum()
  assert abs(long_first - full) > 10 * tolerance


def test_sample_matches_full_split_within_sampling_error(loss_by_length):
  """One seeded sample (16 batches, ~30 documents) against the whole split.

  The sample BPB is a ratio estimator over m documents drawn without
  replacement from n: its standard deviation is about
  sqrt((1 - m / n) * var(e) / m) / mean(bytes), with e = nats - F * bytes per
  document and F the full split's loss per byte.
  """
  splits, cfg = loss_by_length
  eval_fn = _eval_fn(splits)
  full = heldout.heldout_bpb(eval_fn, cfg)
  sample = heldout.heldout_bpb(eval_fn, cfg, max_batches=16)
  assert sample == heldout.heldout_bpb(eval_fn, cfg, max_batches=16)  # Same order each time.
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


# A copy task: each document is a random block of PERIOD tokens repeated, and
# the "model" predicts a target exactly when the token PERIOD back is in the
# row's visible context of the same document, else it is uniform over VOCAB.
PERIOD, VOCAB = 24, 512
HIT = 0.05  # Nats of a predicted target.


def _copy_docs(seed: int, n: int) -> list[np.ndarray]:
  rng = np.random.default_rng(seed)
  docs = []
  for length in rng.integers(10, 3000, n):
    block = rng.integers(3, VOCAB, PERIOD)
    body = np.resize(block, length)
    docs.append(np.concatenate([[2], body, [1]]).astype(np.int32))  # [bos] body [eos]
  return docs


def _copy_nats(inputs, targets, positions, mask) -> float:
  """The copy model's summed loss over `mask` of [B, T] rows."""
  back = np.arange(inputs.shape[1]) + 1 - PERIOD  # Where the token PERIOD back sits.
  seen = positions >= PERIOD - 1  # It is in the row, in the same document.
  earlier = np.take_along_axis(inputs, np.maximum(back, 0)[None].repeat(len(inputs), 0), 1)
  hit = seen & (earlier == targets)
  return float(np.where(hit, HIT, math.log(VOCAB))[mask > 0].sum())


def _copy_eval_fn(batch):
  return {"nats": _copy_nats(batch["inputs"], batch["targets"], batch["positions"],
                             batch["loss_mask"]),
          "tokens": float(batch["loss_mask"].sum())}


def _whole_document_nats(doc: np.ndarray) -> float:
  """The copy model's loss with the whole document as context (the reference)."""
  j = np.arange(len(doc) - 1)
  hit = (j >= PERIOD - 1) & (doc[np.maximum(j + 1 - PERIOD, 0)] == doc[j + 1])
  return float(np.where(hit, HIT, math.log(VOCAB)).sum())


def _piece_nats(doc: np.ndarray, seq_len: int) -> float:
  """The copy model's loss when every piece of seq_len pairs starts without context
  (how long documents were scored before windows)."""
  rows = [packing.assemble_row([(p, 0)], seq_len, 0) for p in packing.split_pieces(doc, seq_len)]
  batch = {k: np.stack([r[k] for r in rows]) for k in packing.ROW_KEYS}
  return _copy_nats(batch["inputs"], batch["targets"], batch["positions"], batch["loss_mask"])


@pytest.fixture(scope="module")
def copy_task(tmp_path_factory):
  """Held-out splits of copy documents (10 to 3000 tokens) and their prepared folder."""
  docs = {task: _copy_docs(100 + i, 60) for i, task in enumerate(TASKS)}
  doc_bytes = {task: [3 * len(d) for d in task_docs] for task, task_docs in docs.items()}
  root = tmp_path_factory.mktemp("copy")
  for task in TASKS:
    (root / task).mkdir()
    layout.write_heldout(root / task, docs[task], doc_bytes[task])
    layout.write_stats(root / task, dict(task=task, heldout_docs=len(docs[task]),
                                         heldout_bytes=sum(doc_bytes[task])))
  cfg = config_lib.data_config()
  layout.write_manifest(root, dict(tokenizer=cfg.tokenizer, pad_id=0))
  cfg.update(mixture=MIXTURE, data_dir=str(root), prepare_if_missing=False, batch_size=BATCH)
  return docs, doc_bytes, cfg


def test_bpb_of_a_model_that_needs_context_does_not_depend_on_seq_len(copy_task):
  """Windows give every target the context it needs (PERIOD tokens <= seq_len / 2):
  the same BPB at seq_len 64, 256 and 1024, equal to scoring each document whole.
  Pieces restarting without context (the scoring before windows) lose PERIOD
  targets per piece: their BPB moved with seq_len, by far more than the tolerance."""
  docs, doc_bytes, cfg = copy_task
  by_seq_len = {}
  for seq_len in (64, 256, 1024):
    cfg.seq_len = seq_len
    by_seq_len[seq_len] = heldout.heldout_bpb(_copy_eval_fn, cfg)
  for task in TASKS:
    whole = sum(_whole_document_nats(d) for d in docs[task]) / LN2 / sum(doc_bytes[task])
    pairs = sum(len(d) - 1 for d in docs[task])
    for seq_len, results in by_seq_len.items():
      r = results[task]
      assert r["tokens"] == pairs and r["docs"] == len(docs[task])
      assert math.isclose(r["bpb"], whole, rel_tol=1e-9), seq_len
    pieces = {seq_len: sum(_piece_nats(d, seq_len) for d in docs[task]) / LN2
              / sum(doc_bytes[task]) for seq_len in by_seq_len}
    assert pieces[64] > 1.3 * pieces[1024] and pieces[1024] > 1.01 * whole
    assert max(len(d) for d in docs[task]) > 2 * 1024  # Longer than a row at every seq_len.


@pytest.mark.parametrize("seq_len,stride", [(16, 0), (16, 5), (16, 16), (7, 3)])
def test_every_target_is_scored_once_with_its_context(seq_len, stride):
  """Documents of unique token ids: the targets `loss_mask` scores, over every
  batch of every host, are each target of the evaluated documents exactly once,
  and each has at least seq_len - stride tokens of its document before it in
  its row (all of them near the document's start)."""
  rng = np.random.default_rng(seq_len + stride)
  lengths = rng.integers(2, 6 * seq_len, 40)
  offsets = np.concatenate([[0], np.cumsum(lengths)])
  docs = [np.arange(o, o + n, dtype=np.int32) + 1 for o, n in zip(offsets, lengths)]
  doc_of = np.repeat(np.arange(len(docs)), lengths)  # Token id - 1 -> document.
  order = rng.permutation(len(docs))
  for max_batches in (0, 3):
    scored, hosts = [], 2
    plans = [heldout_batches.EvalBatches(docs, [1.0] * len(docs), order, seq_len=seq_len,
                                         batch_size=4, pad_id=0, task_id=5,
                                         max_batches=max_batches, stride=stride,
                                         process_index=p, process_count=hosts)
             for p in range(hosts)]
    kept = seq_len - plans[0].stride
    for plan in plans:
      for b in plan:
        mask = b["loss_mask"] > 0
        assert (b["segment_ids"][mask] > 0).all() and (b["task_ids"][mask] == 5).all()
        targets = b["targets"][mask]
        j = targets - 1 - offsets[doc_of[targets - 1]] - 1  # The target's pair index.
        assert (b["positions"][mask] >= np.minimum(j, kept)).all()
        scored += targets.tolist()
    expected = np.concatenate([docs[d][1:] for d in plans[0].doc_indices])
    assert sorted(scored) == sorted(expected.tolist())  # Each exactly once.
    assert plans[0].num_tokens == len(expected)


def _eval_step_nats(cfg, docs, seq_len: int, stride: int = 0, pieces: bool = False):
  """(nats, tokens) of the jitted `eval_step` over the documents: in windows
  (EvalBatches), or (`pieces`) in consecutive pieces of seq_len pairs each
  starting without context (the scoring before windows)."""
  graphdef, _, _ = ts.abstract_model(cfg)
  params = jax.jit(lambda key: ts.init_params(cfg, key))(jax.random.key(0))
  step = jax.jit(functools.partial(ts.eval_step, graphdef=graphdef))
  if pieces:
    rows = [packing.assemble_row([(p, 0)], seq_len, 0) for d in docs
            for p in packing.split_pieces(d, seq_len)]
    rows += [packing.assemble_row([], seq_len, 0)] * (-len(rows) % 4)
    batches = [{k: np.stack([r[k] for r in rows[i:i + 4]]) for k in packing.ROW_KEYS}
               for i in range(0, len(rows), 4)]
  else:
    batches = heldout_batches.EvalBatches(docs, [1.0] * len(docs), np.arange(len(docs)),
                                          seq_len=seq_len, batch_size=4, pad_id=0, task_id=0,
                                          stride=stride)
  nats = tokens = 0.0
  for b in batches:
    out = step(params, {k: b[k] for k in ts.MODEL_INPUTS})
    nats, tokens = nats + float(out["nats"]), tokens + float(out["tokens"])
  return nats, tokens


def test_eval_step_in_windows_equals_whole_documents_for_a_bounded_receptive_field():
  """A tiny transformer whose every layer attends to a window of 8 tokens sees at
  most 14 tokens back, and RoPE makes it shift-invariant: scoring documents of
  up to 119 pairs in windows of 32 with 16 tokens of context gives the loss of
  one whole-document row, to float rounding. Pieces without context do not, and
  neither do windows for a model whose last layer attends to the whole row."""
  rng = np.random.default_rng(0)
  docs = [rng.integers(3, 512, n).astype(np.int32) for n in (120, 77, 33, 20, 5)]
  local = helpers.tiny_model(window_pattern=(8,), last_layer_full=False)
  whole, tokens = _eval_step_nats(local, docs, 128)
  windows, windowed_tokens = _eval_step_nats(local, docs, 32, stride=16)
  assert tokens == windowed_tokens == sum(len(d) - 1 for d in docs)
  assert math.isclose(windows, whole, rel_tol=2e-6)  # Float32 rounding: about 1e-7.
  assert abs(_eval_step_nats(local, docs, 32, pieces=True)[0] / whole - 1) > 1e-4
  full = helpers.tiny_model()  # Its last layer sees the whole row: more than a window holds.
  assert abs(_eval_step_nats(full, docs, 32, stride=16)[0] / _eval_step_nats(full, docs, 128)[0]
             - 1) > 1e-4
