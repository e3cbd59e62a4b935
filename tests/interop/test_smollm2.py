"""A real pretrained model end to end: SmolLM2-135M-Instruct (GGUF, from PyPI) imported,
checked against transformers loading the same file, generated from, annealed, exported."""
import dataclasses
import json
import subprocess
import sys

import grain
import numpy as np
import pytest
from flax import nnx

from configs import anneal
from midtrain_jax.data import layout
from midtrain_jax.data import tokenizer as tokenizer_lib
from midtrain_jax.evals import scoring
from midtrain_jax.interop import gguf, hf, upcycle
from midtrain_jax.workflows import training
from tests import helpers

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.slow

TEXT = ("The capital of France is Paris. In 2024, 12 apples cost $3.50.\n"
        "def add(a, b):\n    return a + b\n# Grüße, 東京, 🙂\n")


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
  path = gguf.smollm2_path()
  run = tmp_path_factory.mktemp("smollm2") / "run"
  hf.import_model(str(path), str(run), log=lambda _: None)
  reference = transformers.AutoModelForCausalLM.from_pretrained(
      str(path.parent), gguf_file=path.name, torch_dtype=torch.float32).eval()
  return run, scoring.load_model(str(run)), reference


def test_logits_and_greedy_continuation_equal_transformers(smollm2):
  """Text prompts start as SmolLM2's tokenizer starts a text (no BOS): the ids equal
  transformers' tokenizer's, and 64 greedy tokens of `python -m midtrain_jax.generate
  --prompt` equal transformers' greedy `generate` on the same file."""
  run, loaded, reference = smollm2
  tok = tokenizer_lib.load_tokenizer(loaded.config.data.tokenizer)
  assert (tok.bos_id, tok.eos_id) == (1, 2)  # <|im_start|>, <|im_end|>, as the GGUF says.
  assert not tok.adds_bos  # Its add_bos_token is False.
  ids = np.asarray([tok.encode_prompt(TEXT)], np.int32)
  with torch.no_grad():
    theirs = reference(torch.tensor(ids)).logits.numpy()
  model = nnx.merge(loaded.graphdef, loaded.params)
  positions = np.arange(ids.shape[1], dtype=np.int32)[None]
  ours = np.asarray(model(ids, positions, np.ones_like(ids))[0])
  assert np.abs(ours - theirs).max() < 1e-3
  path = gguf.smollm2_path()
  their_tok = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
  text = "The capital of France is"
  prompt = their_tok(text).input_ids
  assert tok.encode_prompt(text) == prompt == [504, 3575, 282, 4649, 314]
  reference.generation_config.eos_token_id = None  # All 64 tokens, past <|im_end|>.
  with torch.no_grad():
    expected = reference.generate(torch.tensor([prompt]), max_new_tokens=64,
                                  do_sample=False)[0, len(prompt):].tolist()
  assert len(expected) == 64
  result = subprocess.run(
      [sys.executable, "-m", "midtrain_jax.generate", f"--from={run}", f"--prompt={text}",
       "--max_new_tokens=64", "--stop_at_eos=false"],
      capture_output=True, text=True, check=False, cwd=helpers.REPO_ROOT)
  assert result.returncode == 0, result.stderr[-2000:]
  last = result.stdout.strip().splitlines()[-1]
  assert last == "token_ids=" + ",".join(map(str, expected))
  assert "Paris" in result.stdout


def test_a_short_anneal_starts_pretrained_and_exports_to_transformers(smollm2, tmp_path):
  run, _, _ = smollm2
  config = anneal.get_config(f"init={run}")
  config.data.update(seq_len=32, batch_size=8, data_dir=str(tmp_path / "data"))
  config.train.update(steps=1, log_every_steps=1)
  config.ckpt.every_steps = 1
  config.eval.batches = 0
  config.mesh.update(data=1, fsdp=8)  # 8 replicas of a 135M model and its Adam state won't fit.
  result = training.run(config, str(tmp_path / "anneal"))  # Prepares, then trains.
  assert result.losses[1] < 0.5 * np.log(49152)  # Pretrained: far below a uniform guess.
  # Its documents start as its tokenizer starts a text: no BOS, EOS between them.
  manifest = layout.read_manifest(tmp_path / "data")
  assert manifest["adds_bos"] is False
  task = next(iter(manifest["tasks"]))
  source = grain.sources.ArrayRecordDataSource(layout.shard_files(tmp_path / "data", task,
                                                                  "train"))
  docs = [layout.decode_record(source[i]) for i in range(min(len(source), 200))]
  assert all(d[-1] == 2 for d in docs) and not any(d[0] == 1 for d in docs)
  hf.export_model(str(tmp_path / "anneal"), str(tmp_path / "hf"), log=lambda _: None)
  exported = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
  tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
  assert json.loads((tmp_path / "hf" / "tokenizer_config.json").read_text())[
      "add_bos_token"] is False  # The imported rule, written back.
  ids = tokenizer(TEXT, return_tensors="pt").input_ids
  loaded = scoring.load_model(str(tmp_path / "anneal"))
  tok = tokenizer_lib.load_tokenizer(loaded.config.data.tokenizer)
  assert ids[0].tolist() == tok.encode_prompt(TEXT) == tok.encode(TEXT)
  with torch.no_grad():
    theirs = exported(ids).logits.numpy()
  model = nnx.merge(loaded.graphdef, loaded.params)
  x = ids.numpy().astype(np.int32)
  ours = np.asarray(model(x, np.arange(x.shape[1], dtype=np.int32)[None], np.ones_like(x))[0])
  assert np.abs(ours - theirs).max() < 1e-3


def test_plain_upcycling_of_the_imported_model_keeps_the_reference_logits(smollm2, tmp_path):
  run, loaded, reference = smollm2
  upcycle.upcycle(str(run), str(tmp_path / "moe"), experts=3, top_k=2, drop_ratio=0.0,
                  log=lambda _: None)
  moe = scoring.load_model(str(tmp_path / "moe"))
  assert moe.model_cfg.moe_experts == 3
  tok = tokenizer_lib.load_tokenizer(moe.config.data.tokenizer)
  ids = np.asarray([tok.encode_prompt(TEXT)], np.int32)
  with torch.no_grad():
    theirs = reference(torch.tensor(ids)).logits.numpy()
  positions = np.arange(ids.shape[1], dtype=np.int32)[None]
  ours = np.asarray(nnx.merge(moe.graphdef, moe.params)(ids, positions, np.ones_like(ids))[0])
  assert np.abs(ours[..., :theirs.shape[-1]] - theirs).max() < 1e-3


def _lm_eval_encoding(tok, context: str, continuation: str):
  """lm-eval-harness's `_encode_pair`, written out with the `tokenizers` file directly."""
  spaces = len(context) - len(context.rstrip())
  if spaces:
    context, continuation = context[:-spaces], context[-spaces:] + continuation
  whole = tok.encode(context + continuation, add_special_tokens=False).ids
  context_ids = tok.encode(context, add_special_tokens=False).ids
  return context_ids, whole[len(context_ids):]


def _transformers_loglikelihoods(reference, encoded) -> list[float]:
  """Each (context, continuation)'s loglikelihood from transformers' full forward of
  its tokens. A continuation's log-probabilities are the logits at the positions
  of context + continuation minus its last token, so requests with equal such
  prefixes (a multiple-choice item's one-letter answers) share one forward."""
  forwards = {}
  for ctx, cont in encoded:
    prefix = tuple(ctx + cont[:-1])
    if prefix not in forwards:
      with torch.no_grad():
        logits = reference(torch.tensor([prefix])).logits[0].double()
      forwards[prefix] = torch.log_softmax(logits, dim=-1)
  return [float(sum(forwards[tuple(ctx + cont[:-1])][len(ctx) - 1 + j, t]
                    for j, t in enumerate(cont))) for ctx, cont in encoded]


def test_olmes_loglikelihoods_and_predictions_equal_transformers(smollm2):
  """Requests of four OLMES tasks: our encoding equals lm-eval-harness's (three items
  each), and our loglikelihoods (shared contexts through the KV cache) equal
  transformers' full forward of the same tokens (two items each), and so do the
  predictions. `python -m benchmarks.olmes_scoring` scores more items."""
  import tokenizers

  from midtrain_jax.benchmark_data import olmes as olmes_tasks
  from midtrain_jax.evals import loglikelihood, olmes
  _, loaded, reference = smollm2
  tok = tokenizer_lib.load_tokenizer(loaded.config.data.tokenizer)
  assert not tok.adds_bos  # SmolLM2's GGUF says add_bos_token = False.
  raw = tokenizers.Tokenizer.from_file(loaded.config.data.tokenizer)
  for name in ("arc_easy:rc", "hellaswag:rc", "winogrande:rc", "mmlu:mc"):
    task = olmes_tasks.sample(olmes_tasks.load_task(name), 3, seed=1)
    requests = [r for doc in task.docs[:3] for r in doc.choices]
    ours = [loglikelihood.encode_pair(tok, r.context, r.continuation) for r in requests]
    assert ours == [_lm_eval_encoding(raw, r.context, r.continuation) for r in requests]
    # Two items through both models (each format's sharing of contexts): the
    # reference's forward of every request's whole sequence is this test's cost.
    task = dataclasses.replace(task, docs=task.docs[:2])  # MMLU's sample: 1 per subject.
    ours = ours[:sum(len(doc.choices) for doc in task.docs)]
    scored = loglikelihood.loglikelihoods(loaded, ours, max_len=8192)  # No context is cut.
    theirs = _transformers_loglikelihoods(reference, ours)
    assert max(abs(s.logprob - t) for s, t in zip(scored, theirs)) < 1e-3, name
    reference_scores = [loglikelihood.Scored(t, s.tokens, False) for s, t in zip(scored, theirs)]
    task_choices = dataclasses.replace(task, docs=tuple(
        dataclasses.replace(d, uncond=None) for d in task.docs))
    assert olmes.predictions(task_choices, scored) == olmes.predictions(task_choices,
                                                                        reference_scores)


def test_import_keeps_the_chat_template(smollm2):
  """The GGUF's chat template goes into the imported tokenizer (SFT renders with it)."""
  _, loaded, _ = smollm2
  tok = tokenizer_lib.load_tokenizer(loaded.config.data.tokenizer)
  path = gguf.smollm2_path()
  their_tok = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
  assert tok.chat_template and tok.chat_template == their_tok.chat_template
