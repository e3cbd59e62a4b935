"""prepare with data.dedup: stats and manifest, cross-task copies, the reference set, resume."""
import json

import numpy as np
import pytest

from midtrain_jax import config as config_lib
from midtrain_jax.data import layout
from midtrain_jax.data.prepare import tasks as preparation
from tests.dedup import planted

_MIX = """\
name: dedup_mix
description: two tasks sharing documents
tasks:
  curated: {files: ["curated.jsonl"], capability: qa, weight: 0.5, max_epochs: 2}
  web: {files: ["web.jsonl"], capability: web, weight: 0.5, max_epochs: 2}
"""


def _jsonl(path, texts):
  path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))


@pytest.fixture()
def mixture(tmp_path):
  """web: 60 documents, 10 repeated within it and 5 copies of curated ones; curated: 20."""
  texts = list(planted.prose_documents()[:120])
  curated = texts[:20]
  web = texts[20:80] + [t.lower() for t in texts[20:30]] + [t + " Share this." for t in
                                                            curated[:5]]
  _jsonl(tmp_path / "curated.jsonl", curated)
  _jsonl(tmp_path / "web.jsonl", web)
  _jsonl(tmp_path / "base.jsonl", texts[40:43])  # The "pretraining" reference.
  (tmp_path / "mix.yaml").write_text(_MIX)
  return tmp_path


def _cfg(root, **dedup):
  cfg = config_lib.data_config()
  cfg.mixture, cfg.heldout_fraction, cfg.shard_docs = str(root / "mix.yaml"), 0.1, 16
  cfg.dedup.levels = ("exact", "near")
  for key, value in dedup.items():
    cfg.dedup[key] = value
  return cfg


def _prepare(cfg, out):
  return preparation.prepare(cfg, out, log=lambda _: None)


def test_duplicates_within_and_across_tasks_are_removed_and_recorded(mixture):
  manifest = _prepare(_cfg(mixture), mixture / "out")
  web = layout.read_stats(mixture / "out", "web")
  counts = web["dedup"]["counts"]
  assert counts["docs"] == 75 and counts["removed_docs"] == 15
  assert counts["duplicates/exact"] == 10 and counts["duplicates/near"] == 5
  assert counts["cross_task"] == 5
  assert web["train_docs"] + web["heldout_docs"] == 60
  assert manifest["tasks"]["web"]["dedup"] == {
      "levels": ["exact", "near"], "docs": 75, "removed_docs": 15,
      "duplicates": {"exact": 10, "near": 5}, "cross_task": 5, "reference": {},
      "reference_mode": "drop"}
  assert manifest["tasks"]["curated"]["dedup"]["removed_docs"] == 0
  rows = layout.deduplication_summary(mixture / "out")
  assert [r["removed"] for r in rows] == [0, 15]


def test_priority_keeps_the_web_copy_instead(mixture):
  _prepare(_cfg(mixture, priority=("web",)), mixture / "out")
  assert layout.read_stats(mixture / "out", "curated")["dedup"]["counts"]["cross_task"] == 5


def test_within_task_only_and_changed_settings_prepare_again(mixture):
  _prepare(_cfg(mixture, cross_task=False), mixture / "out")
  assert layout.read_stats(mixture / "out", "web")["dedup"]["counts"]["removed_docs"] == 10
  with pytest.raises(ValueError, match="prepared with other settings"):
    _prepare(_cfg(mixture), mixture / "out")


@pytest.mark.parametrize("mode", ["drop", "count"])
def test_reference_set_drops_or_counts(mixture, mode):
  cfg = _cfg(mixture, reference=(str(mixture / "base.jsonl"),), reference_mode=mode)
  _prepare(cfg, mixture / "out")
  stats = layout.read_stats(mixture / "out", "web")
  assert stats["dedup"]["counts"]["reference/exact"] == 3
  assert stats["dedup"]["counts"]["removed_docs"] == (18 if mode == "drop" else 15)


def _tokens(task_dir):
  import grain
  files = sorted(str(p) for p in task_dir.glob("train-*.array_record"))
  source = grain.sources.ArrayRecordDataSource(files)
  return [np.frombuffer(source[i], np.uint32).tolist() for i in range(len(source))]


def test_idempotent_and_an_interrupted_prepare_resumes_to_the_same_shards(mixture):
  cfg = _cfg(mixture)
  full = _prepare(cfg, mixture / "full")
  assert _prepare(cfg, mixture / "full") == full
  _prepare(cfg, mixture / "crashed")
  web = mixture / "crashed" / "web"
  # A crash after web's second shard; curated stays prepared (and is read again).
  (web / "stats.json").unlink()
  for path in sorted(web.glob("train-*")):
    if int(path.name[6:11]) >= 2:
      path.unlink()
  assert _prepare(cfg, mixture / "crashed") == full
  assert _tokens(web) == _tokens(mixture / "full" / "web")
  assert layout.read_stats(mixture / "crashed", "web")["dedup"] == layout.read_stats(
      mixture / "full", "web")["dedup"]


def test_config_errors_name_the_key():
  c = config_lib.base_config("tiny")
  c.data.dedup.levels = ("exact", "fuzzy")
  with pytest.raises(ValueError, match=r"config\.data\.dedup\.levels"):
    config_lib.validate(c)
  c.data.dedup.levels = ("near",)
  c.data.dedup.jaccard = 0.0
  with pytest.raises(ValueError, match=r"config\.data\.dedup\.jaccard"):
    config_lib.validate(c)
  c.data.dedup.jaccard = 0.4
  c.data.dedup.levels = ("semantic",)
  with pytest.raises(ValueError, match=r"config\.data\.dedup\.embedder"):
    config_lib.validate(c)


def test_exact_only_task_keeps_near_copies_and_changing_it_prepares_again(mixture):
  _prepare(_cfg(mixture, exact_only=("web",)), mixture / "out")
  web = layout.read_stats(mixture / "out", "web")
  counts = web["dedup"]["counts"]
  # The 10 exact repeats go; the 5 near copies of curated documents stay.
  assert counts["removed_docs"] == 10 and counts["duplicates/exact"] == 10
  assert "duplicates/near" not in counts and web["dedup"]["exact_only"] == ["web"]
  with pytest.raises(ValueError, match="prepared with other settings"):
    _prepare(_cfg(mixture), mixture / "out")


def test_exact_only_names_tasks_of_the_mixture(mixture):
  with pytest.raises(ValueError, match=r"config\.data\.dedup\.exact_only names \['wbe'\]"):
    _prepare(_cfg(mixture, exact_only=("wbe",)), mixture / "out")
