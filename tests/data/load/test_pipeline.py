"""Training/eval iterators on the prepared demo mixture: layout, resume, errors."""
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from midtrain_jax.data import layout
from midtrain_jax.data.load import heldout_batches, packing, pipeline, prepared
from midtrain_jax.data.mixtures import catalog
from tests.data import demo_data


def _batches(it, n):
  return [next(it) for _ in range(n)]


def test_batch_layout_and_document_boundaries():
  cfg = demo_data.data_cfg(seq_len=128, batch_size=8)
  it = pipeline.make_train_iterator(cfg, seed=0)
  names = it.task_names
  assert names == prepared.task_names(cfg) and len(names) == 8
  for batch in _batches(it, 5):
    assert sorted(batch) == ["inputs", "loss_mask", "positions", "segment_ids", "targets",
                             "task_ids"]
    for value in batch.values():
      assert value.shape == (8, 128) and value.dtype == np.int32
    seg, pos = batch["segment_ids"], batch["positions"]
    same_doc = (seg[:, 1:] == seg[:, :-1]) & (seg[:, 1:] > 0)
    # Inside a document the next input is the current target; positions count up.
    np.testing.assert_array_equal(batch["inputs"][:, 1:][same_doc],
                                  batch["targets"][:, :-1][same_doc])
    np.testing.assert_array_equal(pos[:, 1:][same_doc], pos[:, :-1][same_doc] + 1)
    starts = (seg > 0) & ~np.pad(same_doc, ((0, 0), (1, 0)))
    assert np.all(pos[starts] == 0)
    assert np.all((batch["task_ids"] == -1) == (seg == 0))
    np.testing.assert_array_equal(batch["loss_mask"], seg > 0)  # Training scores every target.
    assert batch["inputs"].max() < prepared.vocab_size(cfg)
  assert prepared.vocab_size(cfg) == 8192


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resume_from_saved_state_gives_identical_batches(num_workers):
  cfg = demo_data.data_cfg(seq_len=256, batch_size=4, num_workers=num_workers)
  first = pipeline.make_train_iterator(cfg, seed=7)
  _batches(first, 9)
  state = json.loads(json.dumps(first.get_state()))  # As stored in a checkpoint.
  expected = _batches(first, 12)
  resumed = pipeline.make_train_iterator(cfg, seed=7)
  resumed.set_state(state)
  for want, got in zip(expected, _batches(resumed, 12)):
    for key in want:
      np.testing.assert_array_equal(want[key], got[key])
  other_seed = next(pipeline.make_train_iterator(cfg, seed=8))
  assert not np.array_equal(other_seed["inputs"], expected[0]["inputs"])


def test_processes_get_their_share_of_different_documents():
  cfg = demo_data.data_cfg(seq_len=128, batch_size=8)
  parts = [next(pipeline.make_train_iterator(cfg, seed=0, process_index=i, process_count=2))
           for i in range(2)]
  assert parts[0]["inputs"].shape == (4, 128)
  assert not np.array_equal(parts[0]["inputs"], parts[1]["inputs"])


def test_weight_stage_introduces_a_task_at_a_step():
  stage_two = {"web_c4": 0.5, "math_synthetic": 0.5}
  cfg = demo_data.data_cfg(seq_len=512, batch_size=8, packing_window_rows=8,
                           weight_stages=((0, {"web_c4": 1.0}), (10, stage_two)))
  it = pipeline.make_train_iterator(cfg, seed=0)
  math_id = it.task_names.index("math_synthetic")
  batches = _batches(it, 40)
  early = np.concatenate([b["task_ids"] for b in batches[:8]])
  # The switch lands within a packing window plus one document of step 10.
  late = np.concatenate([b["task_ids"] for b in batches[16:]])
  assert np.all(early[early >= 0] == it.task_names.index("web_c4"))
  share = np.mean(late[late >= 0] == math_id)
  assert 0.4 < share < 0.6


def test_code_documents_get_fim_sentinels_at_the_configured_rate():
  def count(rate):
    cfg = demo_data.data_cfg(seq_len=512, batch_size=8, fim_rate=rate,
                             weights={"code_python_stdlib": 1.0})
    manifest = prepared.open_prepared(cfg).manifest
    inputs = np.stack([b["inputs"] for b in
                       _batches(pipeline.make_train_iterator(cfg, seed=1), 20)])
    starts = int(np.sum(inputs == manifest["bos_id"]))
    return starts, {k: int(np.sum(inputs == v)) for k, v in manifest["fim_ids"].items()}
  starts, sentinels = count(0.0)
  assert starts > 5 and sentinels == {"prefix": 0, "middle": 0, "suffix": 0, "pad": 0}
  starts, sentinels = count(1.0)
  # Every document gets <PRE> right after BOS; pieces may cut off the others.
  assert sentinels["prefix"] == starts > 5
  assert sentinels["middle"] > 5 and sentinels["suffix"] > 5


def test_eval_iterator_covers_heldout_split_with_byte_count():
  cfg = demo_data.data_cfg(seq_len=256, batch_size=4)
  stats = json.loads((pathlib.Path(cfg.data_dir) / "math_synthetic" / "stats.json").read_text())
  batches = heldout_batches.make_eval_iterator(cfg, "math_synthetic")
  rows = list(batches)
  predicted = sum(int(b["loss_mask"].sum()) for b in rows)
  assert batches.num_tokens == predicted == stats["heldout_tokens"] - stats["heldout_docs"]
  assert batches.num_bytes == stats["heldout_bytes"] > batches.num_tokens
  assert all(b["inputs"].shape == (4, 256) for b in rows)
  # Prepare stores each held-out document's bytes, so a sample's byte count is exact.
  doc_bytes = layout.read_heldout_bytes(cfg.data_dir, "math_synthetic")
  assert len(doc_bytes) == stats["heldout_docs"] and sum(doc_bytes) == stats["heldout_bytes"]
  sample = heldout_batches.make_eval_iterator(cfg, "math_synthetic", max_batches=2)
  order = heldout_batches.eval_order(stats["heldout_docs"], "math_synthetic")
  assert 0 < sample.num_docs < stats["heldout_docs"]
  np.testing.assert_array_equal(sample.doc_indices, order[:sample.num_docs])
  assert sample.num_bytes == sum(doc_bytes[i] for i in sample.doc_indices)
  with pytest.raises(ValueError, match="not in mixture"):
    heldout_batches.make_eval_iterator(cfg, "olmo3_web")


def test_pack_in_order_keeps_documents_whole_and_in_order():
  rng = np.random.default_rng(0)
  for _ in range(300):
    seq_len, rows, cut = int(rng.integers(2, 20)), int(rng.integers(1, 6)), int(rng.integers(5))
    stride = int(rng.integers(1, seq_len + 1))
    lengths = [int(n) for n in rng.integers(0, 2 * seq_len * rows + 3, int(rng.integers(1, 30)))]
    batches, count = packing.pack_in_order(lengths, seq_len, rows, cut, stride=stride)
    # Every pair of the first `count` documents scored once, with at least
    # seq_len - stride pairs of its document before it in its window (or all of
    # them); rows no longer than seq_len.
    pairs = []
    for row in (row for batch in batches for row in batch):
      spans = [range(first, min(first + seq_len, lengths[doc])) for doc, first, _ in row]
      assert sum(len(r) for r in spans) <= seq_len
      for (doc, first, scored), span in zip(row, spans):
        assert span.start <= scored < span.stop
        pairs += [(doc, k) for k in range(scored, span.stop)]
        assert all(k - first >= min(k, seq_len - stride) for k in range(scored, span.stop))
    assert sorted(pairs) == [(d, k) for d in range(count) for k in range(lengths[d])]
    assert all(len(batch) == rows for batch in batches)
    # Cut after the document that needs a batch past `cut`; the same rows as packing all.
    assert count == len(lengths) or len(batches) > cut > 0
    whole, _ = packing.pack_in_order(lengths, seq_len, rows, stride=stride)
    for batch, full_batch in zip(batches, whole):
      assert batch == [[p for p in row if p[0] < count] for row in full_batch]


def test_bad_configuration_fails_before_training(tmp_path):
  with pytest.raises(ValueError, match="Unknown mixture 'nope'"):
    pipeline.make_train_iterator(demo_data.data_cfg(mixture="nope"), seed=0)
  with pytest.raises(ValueError, match="'web_xyz' is not in the mixture"):
    pipeline.make_train_iterator(demo_data.data_cfg(weights={"web_xyz": 1.0}), seed=0)
  with pytest.raises(ValueError, match="all weights are zero"):
    pipeline.make_train_iterator(demo_data.data_cfg(weights={"web_c4": 0.0}), seed=0)
  cfg = demo_data.data_cfg()
  cfg.data_dir = str(tmp_path / "empty")
  with pytest.raises(FileNotFoundError, match="No prepared data"):
    pipeline.make_train_iterator(cfg, seed=0)
  # A prepared copy with one shard file gone.
  copy = tmp_path / "copy"
  subprocess.run(["cp", "-r", demo_data.prepared_dir(), str(copy)], check=True)
  (copy / "web_c4" / "train-00000.array_record").unlink()
  cfg.data_dir = str(copy)
  with pytest.raises(FileNotFoundError, match="web_c4: shard files missing"):
    pipeline.make_train_iterator(cfg, seed=0)


def test_an_unprepared_mixture_is_an_error_naming_the_prepare_command(tmp_path):
  cfg = demo_data.data_cfg()
  cfg.data_dir = str(tmp_path / "never_prepared")
  cfg.prepare_if_missing = True  # The loader never prepares, whatever this says.
  command = f"python -m midtrain_jax.data.prepare --mixture=dolmino_demo --out={cfg.data_dir}"
  for build in (lambda: pipeline.make_train_iterator(cfg, seed=0),
                lambda: heldout_batches.make_eval_iterator(cfg, "web_c4")):
    with pytest.raises(prepared.NotPreparedError) as raised:
      build()
    assert command in str(raised.value)
  assert not (tmp_path / "never_prepared").exists()


def test_the_train_iterator_opens_the_prepared_mixture_once(monkeypatch):
  """Its data config is resolved once: one manifest read, one mixture lookup, however
  many loader shards and tasks."""
  calls = {"read_manifest": 0, "get_mixture": 0, "resolve_dir": 0}

  def counted(module, name):
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
      calls[name] += 1
      return original(*args, **kwargs)
    monkeypatch.setattr(module, name, wrapper)

  counted(layout, "read_manifest")
  counted(layout, "resolve_dir")
  counted(catalog, "get_mixture")
  it = pipeline.make_train_iterator(demo_data.data_cfg(loader_shards=4), seed=0)
  next(it)
  assert calls == {"read_manifest": 1, "get_mixture": 1, "resolve_dir": 1}


def test_padding_is_at_most_two_percent_at_seq_2048():
  cfg = demo_data.data_cfg(seq_len=2048, batch_size=8)
  batches = _batches(pipeline.make_train_iterator(cfg, seed=0), 24)
  padding = np.mean([np.mean(b["segment_ids"] == 0) for b in batches])
  assert padding <= 0.02


def test_training_path_does_not_import_tensorflow_or_seqio():
  code = ("import sys; from midtrain_jax.data.load import pipeline; "
          "print(any(m.split('.')[0] in ('tensorflow', 'seqio') for m in sys.modules))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       check=True)
  assert out.stdout.strip() == "False"
