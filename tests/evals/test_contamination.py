"""The clean / contaminated split: items planted in a tiny prepared mixture, found, scored apart."""
import json
import math

import pytest

from midtrain_jax import config as config_lib
from midtrain_jax.benchmark_data import items as benchmarks
from midtrain_jax.data import layout
from midtrain_jax.data.prepare import tasks as preparation
from midtrain_jax.evals import contamination, stats, tables

_YAML = """\
name: leaky_mix
tasks:
  leaky_web: {files: ["docs.jsonl"], capability: web, weight: 1.0}
"""


@pytest.fixture(scope="module")
def planted():
  """Two of the first 8 sampled HumanEval items, planted among ordinary documents."""
  chosen = benchmarks.sample_items("humaneval", 8)
  return [chosen[1], chosen[5]]


def _prepared(folder, planted, mode: str):
  """A run's config whose one-task mixture was prepared with decontamination `mode`."""
  folder.mkdir(parents=True, exist_ok=True)
  docs = [{"text": f"An ordinary page about gardening and tomatoes, part {i}."}
          for i in range(20)]
  docs += [{"text": f"Solutions blog.\n{item.question}\nThanks for reading!"} for item in planted]
  (folder / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
  (folder / "mix.yaml").write_text(_YAML)
  config = config_lib.base_config("tiny")
  config.data.update(mixture=str(folder / "mix.yaml"), data_dir=str(folder / "prepared"),
                     heldout_fraction=0.0)
  config.data.decontam.update(benchmarks=("humaneval",), mode=mode)
  config_lib.validate(config)
  preparation.prepare(config.data, log=lambda _: None)
  return config


def test_kept_items_are_recorded_and_scored_apart(tmp_path, planted):
  config = _prepared(tmp_path / "keep", planted, "keep")
  planted_ids = sorted(it.id for it in planted)
  entry = layout.read_manifest(config.data.data_dir)["tasks"]["leaky_web"]
  assert entry["train_docs"] == 22  # Mode "keep": the leaky documents stay.
  assert entry["decontam"] == {"benchmarks": ["humaneval"], "mode": "keep",
                               "items": {"humaneval": planted_ids}}

  record = contamination.training_record(config, names=("humaneval", "gsm8k"))
  assert record.in_training == {"humaneval": set(planted_ids)} and record.status("humaneval") == ""
  assert "not checked against gsm8k" in record.status("gsm8k")

  # Per-item [nats, bytes] as benchmark_bpb keeps them: leaked items look easier.
  sample = benchmarks.sample_items("humaneval", 8)
  per_item = {it.id: [math.log(2) * (50 if it.id in planted_ids else 100), 100] for it in sample}
  result = {"bpb": stats.point(list(per_item.values())), "per_item": per_item}
  contamination.annotate(result, "humaneval", record)
  assert result["contamination"]["status"] == "recorded"
  assert result["contamination"]["in_training"] == 2 and result["contamination"]["removed"] == 0
  assert result["contamination"]["contaminated_ids"] == planted_ids
  clean, dirty = result["clean"], result["contaminated"]
  assert (clean["n_items"], dirty["n_items"]) == (6, 2)
  assert dirty["value"] == pytest.approx(0.5) and clean["value"] == pytest.approx(1.0)
  assert dirty["ci95"] == pytest.approx(0.0) and clean["subsets"] == 1
  text = tables.format_results({"checkpoint": "c", "step": 0, "benchmark_bpb":
                                {"humaneval": result}})
  assert "clean 1.000 ± 0.000 (6) | contaminated 0.500 ± 0.000 (2)" in text


def test_removed_items_count_as_clean_and_missing_records_as_unknown(tmp_path, planted):
  config = _prepared(tmp_path / "drop", planted, "drop")
  assert layout.read_manifest(config.data.data_dir)["tasks"]["leaky_web"]["train_docs"] == 20
  record = contamination.training_record(config, names=("humaneval",))
  assert record.in_training == {} and len(record.removed["humaneval"]) == 2
  per_item = {it.id: 1 for it in benchmarks.sample_items("humaneval", 8)}
  result = contamination.annotate({"per_item": per_item}, "humaneval", record)
  assert result["contamination"]["removed"] == 2 and result["contaminated"]["n_items"] == 0
  assert result["clean"]["n_items"] == 8

  # A folder prepared before items were recorded: it found hits, not which.
  stats_path = tmp_path / "drop" / "prepared" / "leaky_web" / "stats.json"
  stats = json.loads(stats_path.read_text())
  del stats["decontam"]["items"]
  stats_path.write_text(json.dumps(stats))
  old = contamination.annotate({"per_item": per_item}, "humaneval",
                               contamination.training_record(config, names=("humaneval",)))
  assert old["contamination"]["status"] == "unknown" and "clean" not in old
  assert "without recording which" in old["contamination"]["reason"]

  for unknown in (contamination.training_record(None, names=("humaneval",)),
                  contamination.training_record(config_lib.base_config("tiny"), "",
                                                ("humaneval",))):
    assert unknown.status("humaneval")  # No config, or no prepared data: never "clean".
