"""lm-eval through the `midtrain_jax` model equals lm-eval's own `hf` model, per sample.

A tiny run trained here (demo SentencePiece vocabulary, which adds BOS) is
exported as an HF folder; three local tasks over a JSON file (multiple
choice, generate_until, loglikelihood_rolling) run through both models with
`lm_eval.simple_evaluate`, offline.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

lm_eval = pytest.importorskip("lm_eval")
pytest.importorskip("transformers")

from lm_eval.tasks import TaskManager  # noqa: E402

from midtrain_jax import lm_eval_model  # noqa: E402
from midtrain_jax.interop import hf  # noqa: E402
from midtrain_jax.train import loop  # noqa: E402
from tests import helpers  # noqa: E402

OFFLINE = {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "HF_EVALUATE_OFFLINE": "1"}
MAX_LENGTH = 48  # Short, so the rolling task needs several windows.
DOCS = [
    {"question": "The capital of France is", "choices": ["Paris", "Rome", "a small dog"],
     "answer": 0, "prompt": "def add(a, b):\n", "target": "    return a + b",
     "text": "import os\nimport sys\n\ndef main():\n  print(os.getcwd())\n"},
    {"question": "Two plus two equals", "choices": ["four", "five", "twenty-two"], "answer": 0,
     "prompt": "The quick brown fox", "target": " jumps",
     "text": "Water boils at one hundred degrees. " * 6},
    {"question": "def square(x): return", "choices": [" x * x", " x + x", " x"], "answer": 0,
     "prompt": "for i in range(10):", "target": "\n  print(i)",
     "text": "The history of the city begins in the Roman era, when a small settlement grew."},
    {"question": "Which is a colour?", "choices": ["blue", "seven", "under"], "answer": 0,
     "prompt": "Once upon a time", "target": " there", "text": "a = [1, 2, 3]\nb = sum(a)\n"},
]
_COMMON = "dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\ntest_split: test\n"
TASKS = {
    "local_mc": _COMMON + (
        "output_type: multiple_choice\ndoc_to_text: \"{{question}}\"\n"
        "doc_to_choice: \"{{choices}}\"\ndoc_to_target: answer\ntarget_delimiter: \" \"\n"
        "metric_list:\n  - metric: acc\n  - metric: acc_norm\n"),
    "local_gen": _COMMON + (
        "output_type: generate_until\ndoc_to_text: \"{{prompt}}\"\ndoc_to_target: \"{{target}}\"\n"
        "target_delimiter: \"\"\ngeneration_kwargs:\n  until: [\"}\", \"STOP\"]\n"
        "  max_gen_toks: 8\n  do_sample: false\nmetric_list:\n  - metric: exact_match\n"),
    "local_rolling": _COMMON + (
        "output_type: loglikelihood_rolling\ndoc_to_text: \"\"\ndoc_to_target: \"{{text}}\"\n"
        "metric_list:\n  - metric: word_perplexity\n  - metric: bits_per_byte\n"),
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  """(run dir, exported HF dir, task dir) with the environment offline."""
  root = tmp_path_factory.mktemp("lm_eval")
  saved = {k: os.environ.get(k) for k in OFFLINE}
  os.environ.update(OFFLINE)
  loop.run(helpers.small_config(2), str(root / "run"))
  hf.export_model(str(root / "run"), str(root / "hf"), log=lambda _: None)
  tasks = root / "tasks"
  tasks.mkdir()
  data = tasks / "docs.json"
  data.write_text(json.dumps(DOCS))
  for name, text in TASKS.items():
    (tasks / f"{name}.yaml").write_text(f"task: {name}\n" + text.replace("{data}", str(data)))
  yield root / "run", root / "hf", tasks
  for k, v in saved.items():
    if v is None:
      os.environ.pop(k, None)
    else:
      os.environ[k] = v


def _samples(model: str, model_args: dict, tasks_dir) -> dict:
  out = lm_eval.simple_evaluate(
      model=model, model_args=model_args, tasks=sorted(TASKS), log_samples=True,
      task_manager=TaskManager(include_path=str(tasks_dir)), batch_size=3,
      random_seed=0, numpy_random_seed=0, torch_random_seed=0, fewshot_random_seed=0)
  return {task: sorted(rows, key=lambda r: r["doc_id"]) for task, rows in out["samples"].items()}


@pytest.fixture(scope="module")
def both(setup):
  run, exported, tasks = setup
  ours = _samples("midtrain_jax", {"path": str(run), "max_length": MAX_LENGTH}, tasks)
  theirs = _samples("hf", {"pretrained": str(exported), "dtype": "float32",
                           "max_length": MAX_LENGTH, "device": "cpu", "add_bos_token": True}, tasks)
  return ours, theirs


def test_multiple_choice_equals_hf_per_sample(both):
  ours, theirs = both
  assert len(ours["local_mc"]) == len(DOCS)
  for a, b in zip(ours["local_mc"], theirs["local_mc"]):
    assert a["arguments"] == b["arguments"]
    ll_a = np.array([float(r[0]) for r in a["filtered_resps"]])
    ll_b = np.array([float(r[0]) for r in b["filtered_resps"]])
    np.testing.assert_allclose(ll_a, ll_b, atol=2e-3, rtol=0)
    assert ll_a.argmax() == ll_b.argmax() and a["acc"] == b["acc"]
    assert [r[1] for r in a["filtered_resps"]] == [r[1] for r in b["filtered_resps"]]


def test_generate_until_equals_hf_per_sample(both):
  ours, theirs = both
  texts = [a["filtered_resps"][0] for a in ours["local_gen"]]
  assert texts == [b["filtered_resps"][0] for b in theirs["local_gen"]]
  assert any(texts), "the model generated nothing: the comparison would be empty"


def test_loglikelihood_rolling_equals_hf_per_sample(both):
  ours, theirs = both
  ll_a = [float(a["filtered_resps"][0]) for a in ours["local_rolling"]]
  ll_b = [float(b["filtered_resps"][0]) for b in theirs["local_rolling"]]
  np.testing.assert_allclose(ll_a, ll_b, atol=5e-3, rtol=1e-5)


def test_bad_model_args_are_named(setup):
  run, _, _ = setup
  with pytest.raises(FileNotFoundError, match="path='nowhere' does not exist"):
    lm_eval_model.MidtrainLM(path="nowhere")
  with pytest.raises(ValueError, match="batch_size=0"):
    lm_eval_model.MidtrainLM(path=str(run), batch_size=0)
  with pytest.raises(TypeError, match="unknown"):
    lm_eval_model.MidtrainLM.create_from_arg_string(f"path={run},unknown=1")


@pytest.mark.slow
def test_the_command_line_runs_a_task(setup, tmp_path):
  run, _, tasks = setup
  out = subprocess.run(
      [sys.executable, "-m", "midtrain_jax.lm_harness", "--model", "midtrain_jax",
       "--model_args", f"path={run},max_length={MAX_LENGTH}", "--tasks", "local_mc",
       "--include_path", str(tasks), "--output_path", str(tmp_path), "--log_samples"],
      capture_output=True, text=True, env={**os.environ, **OFFLINE}, check=False, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "local_mc" in out.stdout and "acc" in out.stdout
