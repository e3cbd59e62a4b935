"""prepare: stats, idempotency, resumption, malformed-record limit, decontamination."""
import json
import os
import pathlib

import numpy as np
import pytest

from midtrain_jax import config as config_lib
from midtrain_jax.benchmark_data import items as benchmarks
from midtrain_jax.data import layout
from midtrain_jax.data import tokenizer as tokenizer_lib
from midtrain_jax.data.mixtures import catalog
from midtrain_jax.data.prepare import tasks as preparation
from midtrain_jax.documents import readers as sources
from tests.data import demo_data


def test_demo_mixture_has_all_capabilities_and_consistent_stats():
  out = pathlib.Path(demo_data.prepared_dir())
  manifest = json.loads((out / "manifest.json").read_text())
  assert {t["capability"] for t in manifest["tasks"].values()} == set(catalog.CAPABILITIES)
  assert manifest["pad_id"] == 0 and manifest["eos_id"] == 1 and manifest["bos_id"] == 2
  for task, summary in manifest["tasks"].items():
    stats = json.loads((out / task / "stats.json").read_text())
    assert stats["train_docs"] == summary["train_docs"] > 100
    import grain
    files = [str(out / task / f"train-{i:05d}.array_record")
             for i in range(stats["train_shards"])]
    source = grain.sources.ArrayRecordDataSource(files)
    assert len(source) == stats["train_docs"]
    doc = np.frombuffer(source[0], np.uint32)
    assert doc[0] == 2 and doc[-1] == 1
    assert stats["heldout_docs"] >= 5


def _spec(tmp_path, lines, name="tmp_task"):
  path = tmp_path / "docs.jsonl"
  path.write_text("\n".join(lines) + "\n")
  return catalog.TaskSpec(name, "web", lambda cfg=None: [str(path)],
                          sources.field_text("text"), 1, "test", "test")


def _cfg(**overrides):
  cfg = config_lib.data_config()
  cfg.heldout_fraction = 0.0
  for key, value in overrides.items():
    cfg[key] = value
  return cfg


def _tok():
  preparation.ensure_demo_tokenizer(log=lambda _: None)
  return tokenizer_lib.load_tokenizer("demo_spm")


def test_malformed_records_are_counted_with_file_and_line(tmp_path):
  lines = [json.dumps({"text": f"document number {i}"}) for i in range(10)]
  lines[3], lines[7] = "{broken", json.dumps({"title": "no text"})
  spec = _spec(tmp_path, lines)
  stats = preparation.prepare_task(spec, tmp_path / "out", _tok(), _cfg(), log=lambda _: None)
  assert stats["train_docs"] == 8 and stats["malformed"] == 2
  assert stats["malformed_by_reason"] == {"bad JSON": 1, "missing text field": 1}
  assert stats["malformed_examples"][0].startswith(f"{tmp_path}/docs.jsonl:4: bad JSON")
  with pytest.raises(ValueError, match=r"(?s)2 malformed records.*docs.jsonl:8"):
    preparation.prepare_task(_spec(tmp_path, lines, "strict"), tmp_path / "out", _tok(),
                         _cfg(max_malformed=1), log=lambda _: None)


def _tokens(task_dir):
  import grain
  files = sorted(str(p) for p in task_dir.glob("train-*.array_record"))
  source = grain.sources.ArrayRecordDataSource(files)
  return [np.frombuffer(source[i], np.uint32).tolist() for i in range(len(source))]


def test_prepare_is_idempotent_and_resumes_after_a_crash(tmp_path):
  lines = [json.dumps({"text": f"resumable document {i} " * (i % 5 + 1)}) for i in range(50)]
  spec, cfg, tok = _spec(tmp_path, lines), _cfg(shard_docs=8), _tok()
  full = preparation.prepare_task(spec, tmp_path / "full", tok, cfg, log=lambda _: None)
  assert full["train_shards"] == 7 and full["train_docs"] == 50
  stats_file = tmp_path / "full" / "tmp_task" / "stats.json"
  mtime = os.stat(stats_file).st_mtime_ns
  again = preparation.prepare_task(spec, tmp_path / "full", tok, cfg, log=lambda _: None)
  assert again == full and os.stat(stats_file).st_mtime_ns == mtime

  # A crash after shard 2: stats missing, shards 3.. gone, a temp file left.
  crashed = tmp_path / "crashed" / "tmp_task"
  preparation.prepare_task(spec, tmp_path / "crashed", tok, cfg, log=lambda _: None)
  (crashed / "stats.json").unlink()
  for i in range(3, 7):
    (crashed / f"train-{i:05d}.array_record").unlink()
    (crashed / f"train-{i:05d}.json").unlink()
  (crashed / "train-00003.array_record.tmp").write_bytes(b"half a shard")
  logs = []
  resumed = preparation.prepare_task(spec, tmp_path / "crashed", tok, cfg, log=logs.append)
  assert any("resuming after 3 finished shards" in line for line in logs)
  assert {k: v for k, v in resumed.items() if k != "fingerprint"} == {
      k: v for k, v in full.items() if k != "fingerprint"}
  assert _tokens(crashed) == _tokens(tmp_path / "full" / "tmp_task")


def test_changed_settings_are_not_mixed_with_old_shards(tmp_path):
  spec = _spec(tmp_path, [json.dumps({"text": "one document"})] * 3)
  preparation.prepare_task(spec, tmp_path / "out", _tok(), _cfg(), log=lambda _: None)
  with pytest.raises(ValueError, match="prepared with other settings"):
    preparation.prepare_task(spec, tmp_path / "out", _tok(), _cfg(shard_docs=2),
                         log=lambda _: None)


def test_decontamination_drops_documents_with_benchmark_items(tmp_path):
  item = benchmarks.load_items("humaneval")[0]
  clean = [json.dumps({"text": f"An ordinary web page about gardening, part {i}."})
           for i in range(6)]
  leaked = json.dumps({"text": "Solutions blog.\n" + item.question + "\nThanks!"})
  spec = _spec(tmp_path, clean + [leaked])
  cfg = _cfg()
  cfg.decontam.benchmarks = ("humaneval",)
  stats = preparation.prepare_task(spec, tmp_path / "out", _tok(), cfg, log=lambda _: None)
  record = layout.decontamination(stats)
  assert record["benchmarks"] == ["humaneval"] and stats["train_docs"] == 6
  assert record["counts"]["dropped_docs"] == 1 and record["counts"]["hits/humaneval"] == 1
  assert record["counts"]["docs"] == 7 and record["counts"]["contaminated_docs"] == 1
  assert record["items"] == {"humaneval": [item.id]}
  manifest_entry = preparation._manifest_decontam(stats)
  assert manifest_entry == {"benchmarks": ["humaneval"], "mode": "drop",
                            "items": {"humaneval": [item.id]}}


def test_keep_mode_keeps_documents_and_reports_their_items(tmp_path):
  from midtrain_jax.decontam import decontaminator
  assert decontaminator.MODES == config_lib.DECONTAM_MODES
  item = benchmarks.load_items("humaneval")[2]
  leaked = "Solutions blog.\n" + item.question + "\nThanks!"
  deco = decontaminator.Decontaminator.from_benchmarks(["humaneval"])
  (same, hits), (plain, none) = deco.clean_batch([leaked, "A page about tomatoes."], "keep")
  assert same == leaked and [h.item_id for h in hits] == [item.id]
  assert plain == "A page about tomatoes." and none == []
  spec = _spec(tmp_path, [json.dumps({"text": "An ordinary page."}), json.dumps({"text": leaked})])
  cfg = _cfg()
  cfg.decontam.update(benchmarks=("humaneval",), mode="keep")
  stats = preparation.prepare_task(spec, tmp_path / "out", _tok(), cfg, log=lambda _: None)
  record = layout.decontamination(stats)
  assert stats["train_docs"] == 2 and record["mode"] == "keep"
  assert record["counts"]["contaminated_docs"] == 1 and "dropped_docs" not in record["counts"]
  assert record["items"] == {"humaneval": [item.id]}
  config = config_lib.base_config("tiny")
  config.data.decontam.mode = "remove"
  with pytest.raises(ValueError, match="data.decontam.mode='remove'"):
    config_lib.validate(config)


def _heldout(task_dir):
  import grain
  source = grain.sources.ArrayRecordDataSource([str(layout.heldout_file(task_dir))])
  return [np.frombuffer(source[i], np.uint32).tolist() for i in range(len(source))]


def test_heldout_split_is_the_same_in_any_read_order(tmp_path):
  """A bottom-k hash sample of the whole source: the same documents (in the same
  order) whatever order the source is read in; the other candidates are trained on."""
  lines = [json.dumps({"text": f"page {i} about topic {i % 13}"}) for i in range(400)]
  cfg, tok = _cfg(heldout_fraction=0.2, heldout_max_docs=25, shard_docs=64), _tok()
  splits = []
  for seed in range(3):
    order = np.random.default_rng(seed).permutation(len(lines)) if seed else range(len(lines))
    (tmp_path / f"src{seed}").mkdir()
    spec = _spec(tmp_path / f"src{seed}", [lines[i] for i in order])
    stats = preparation.prepare_task(spec, tmp_path / f"out{seed}", tok, cfg,
                                     log=lambda _: None)
    task_dir = tmp_path / f"out{seed}" / "tmp_task"
    splits.append((_heldout(task_dir), sorted(_tokens(task_dir)), stats))
  (held, train, stats), *others = splits
  assert stats["heldout_docs"] == len(held) == 25 and stats["train_docs"] == 375
  assert 40 < stats["heldout_candidates"] < 120  # About 0.2 of 400.
  for held_p, train_p, _ in others:
    assert held_p == held and train_p == train


def test_resuming_rebuilds_the_heldout_sample_without_writing_twice(tmp_path):
  """The held-out choice is made before any shard is written: a resumed run
  holds out the same documents and writes no train document twice."""
  lines = [json.dumps({"text": f"resumable page {i} " * (i % 4 + 1)}) for i in range(120)]
  spec, cfg, tok = _spec(tmp_path, lines), _cfg(heldout_fraction=0.3, heldout_max_docs=6,
                                                shard_docs=10), _tok()
  full = preparation.prepare_task(spec, tmp_path / "full", tok, cfg, log=lambda _: None)
  assert full["heldout_docs"] == 6 and full["heldout_candidates"] > 20
  crashed = tmp_path / "crashed" / "tmp_task"
  preparation.prepare_task(spec, tmp_path / "crashed", tok, cfg, log=lambda _: None)
  (crashed / "stats.json").unlink()
  last = full["train_shards"]
  for i in range(4, last):
    (crashed / f"train-{i:05d}.array_record").unlink()
    (crashed / f"train-{i:05d}.json").unlink()
  resumed = preparation.prepare_task(spec, tmp_path / "crashed", tok, cfg, log=lambda _: None)
  assert {k: v for k, v in resumed.items() if k != "fingerprint"} == {
      k: v for k, v in full.items() if k != "fingerprint"}
  assert _tokens(crashed) == _tokens(tmp_path / "full" / "tmp_task")
  assert _heldout(crashed) == _heldout(tmp_path / "full" / "tmp_task")
