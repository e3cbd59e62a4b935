"""lm-eval-harness's model `midtrain_jax`: any checkpoint this codebase reads, scored by lm-eval.

  python -m midtrain_jax.lm_harness --model midtrain_jax \
      --model_args path=runs/anneal,step=2000,batch_size=8 --tasks arc_easy,hellaswag

or, in Python, `import midtrain_jax.lm_eval_model` and then
`lm_eval.simple_evaluate(model="midtrain_jax", model_args={"path": ...}, ...)`.
Importing this module registers the model (lm-eval 0.4 finds no models
through package entry points, so `python -m midtrain_jax.lm_harness` is
lm-eval's own command line with this import done first).

`path` is a run, a `checkpoints/<step>` directory, a Hugging Face model folder
or a GGUF file (imported once into the cache, as `evaluate --from` does).

Requests are encoded as lm-eval's `hf` model encodes them (`TemplateLM`:
trailing context whitespace moved to the continuation, the continuation's
tokens split off tokenize(context + continuation), an empty context replaced
by the prefix token), with the model's own BOS rule (`Tokenizer.adds_bos`
where `hf` follows the tokenizer's post-processor). Scoring is batched:
`evals/loglikelihood.py` runs each distinct context once into a KV cache and
scores its continuations against copies of it; `generate_until` decodes
prompts grouped by generation settings with `evals/batch_decode.py` (batches
of `batch_size` sorted by length, each row stopping at its first stop sequence
or EOS, each batch ending when all its rows have), then cuts each text at its
first stop sequence.
"""
import json
import os
from collections.abc import Sequence

from midtrain_jax.data import tokenizer as tokenizer_lib
from midtrain_jax.evals import batch_decode, loglikelihood, olmes, scoring
from midtrain_jax.interop import hf
from midtrain_jax.model import sampling
from midtrain_jax.train import checkpoint

try:
  from lm_eval import utils as lm_utils
  from lm_eval.api.model import TemplateLM
  from lm_eval.api.registry import register_model
  from lm_eval.models.utils import (
    handle_stop_sequences,
    normalize_gen_kwargs,
    postprocess_generated_text,
  )
except ImportError as e:  # The optional extra: name how to install it.
  raise ImportError("The lm-eval-harness model needs lm-eval: pip install -e '.[lm_eval]'."
                    ) from e

NAME = "midtrain_jax"


def resolve(path: str, step: int = -1) -> str:
  """The run or checkpoint directory `path` names (HF folders and GGUF files imported)."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"model_args path={path!r} does not exist: give a run, a "
                            "checkpoints/<step> directory, an HF model folder or a GGUF file.")
  if hf.is_foreign(path):
    if step >= 0:
      raise ValueError(f"step={step} names a checkpoint of a run; {path} is an HF folder or "
                       "GGUF file, which has one.")
    return hf.imported_run(path)
  return os.path.join(path, checkpoint.CKPT_SUBDIR, str(step)) if step >= 0 else path


def _positive(name: str, value) -> int:
  if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
    raise ValueError(f"model_args {name}={value!r} must be a positive integer.")
  return value


@register_model(NAME)
class MidtrainLM(TemplateLM):
  """A checkpoint of this codebase as an lm-eval `LM` (module docstring)."""

  def __init__(self, path: str, step: int = -1, batch_size: int | str = 8,
               max_length: int = 2048, max_gen_toks: int = 256, seed: int = 0,
               device: str | None = None, max_batch_size: int | None = None):
    """Loads the model.

    Args:
      path: a run, a checkpoints/<step> directory, an HF model folder or a GGUF file.
      step: the run's checkpoint step (-1: the latest).
      batch_size: contexts per forward pass and prompts per decoding batch
        (lm-eval's `--batch_size`; "auto" keeps the default of 8).
      max_length: the window in tokens: longer requests are cut from the left,
        as `hf` cuts them.
      max_gen_toks: tokens generated when a task does not say.
      seed: sampling seed for tasks that sample (`do_sample`).
      device: accepted for lm-eval's `--device` and unused: JAX places the model.
      max_batch_size: accepted for lm-eval's `--max_batch_size` and unused.
    """
    super().__init__()
    del device, max_batch_size
    if batch_size == "auto" or str(batch_size).startswith("auto:"):
      batch_size = 8
    self._batch = _positive("batch_size", int(batch_size))
    self._max_length = _positive("max_length", max_length)
    self._max_gen_toks = _positive("max_gen_toks", max_gen_toks)
    self._seed = seed
    self.model = scoring.load_model(resolve(str(path), step))
    self.tok: tokenizer_lib.Tokenizer = olmes.model_tokenizer(self.model)
    self._adds_bos = self.tok.adds_bos

  @property
  def eot_token_id(self) -> int:
    return self.tok.eos_id

  @property
  def prefix_token_id(self) -> int:
    # `hf` conditions an empty context on BOS, or EOS where there is none
    # (bos_id falls back to EOS for such vocabularies).
    return self.tok.bos_id

  @property
  def max_length(self) -> int:
    return self._max_length

  @property
  def tokenizer_name(self) -> str:
    return f"{NAME}:{self.tok.name}"

  def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs
                 ) -> list[int]:
    """Token ids of `string`, BOS first when the model's tokenizer adds one
    (`add_special_tokens` None) or when asked to (True)."""
    del kwargs
    bos = self._adds_bos if add_special_tokens is None else add_special_tokens
    return ([self.tok.bos_id] if bos else []) + self.tok.encode(string)

  def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs
                            ) -> list[tuple[float, bool]]:
    """(log-probability, is greedy) of each (cache key, context ids, continuation ids)."""
    del disable_tqdm, kwargs
    # `hf` feeds the last max_length + 1 tokens of context + continuation
    # (max_length inputs predicting max_length targets): the same window here.
    scored = loglikelihood.loglikelihoods(
        self.model, [(ctx, cont) for _, ctx, cont in requests],
        max_len=self._max_length + 1, batch=self._batch)
    out = []
    for (key, _, _), s in zip(requests, scored):
      answer = (s.logprob, s.greedy)
      if key is not None:
        self.cache_hook.add_partial("loglikelihood", key, answer)
      out.append(answer)
    return out

  def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
    """Log-likelihood of each whole text, in `hf`'s disjoint rolling windows."""
    windows, owner = [], []
    for i, (text,) in enumerate(r.args for r in requests):
      for ctx, cont in map(lm_utils.make_disjoint_window, lm_utils.get_rolling_token_windows(
          token_list=self.tok_encode(text), prefix_token=self.prefix_token_id,
          max_seq_len=self._max_length, context_len=1)):
        windows.append((None, ctx, cont))
        owner.append(i)
    totals = [0.0] * len(requests)
    for i, (logprob, _) in zip(owner, self._loglikelihood_tokens(windows, disable_tqdm)):
      totals[i] += logprob
    for r, total in zip(requests, totals):
      self.cache_hook.add_partial("loglikelihood_rolling", r.args, total)
    return totals

  def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
    """Continuations of each context, cut at the first stop sequence (or EOS)."""
    del disable_tqdm
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(requests):
      groups.setdefault(json.dumps(r.args[1], sort_keys=True, default=str), []).append(i)
    out: list[str | None] = [None] * len(requests)
    for members in groups.values():
      kwargs = normalize_gen_kwargs(requests[members[0]].args[1], self._max_gen_toks)
      contexts = [requests[i].args[0] for i in members]
      for i, text in zip(members, self._generate(contexts, kwargs)):
        out[i] = text
        self.cache_hook.add_partial("generate_until", requests[i].args, text)
    return out

  def _generate(self, contexts: Sequence[str], kwargs: dict) -> list[str]:
    """Decodes contexts sharing one set of generation settings, longest first in batches."""
    until = handle_stop_sequences(kwargs.pop("until", None), eos=self.tok.decode(
        [self.tok.eos_id]))
    new_tokens = _positive("max_gen_toks", kwargs.pop("max_gen_toks"))
    if new_tokens >= self._max_length:
      raise ValueError(f"max_gen_toks={new_tokens} leaves no room for a prompt in "
                       f"max_length={self._max_length}.")
    sample = sampling.SampleConfig(
        max_new_tokens=new_tokens, eos_id=self.tok.eos_id,
        temperature=float(kwargs.get("temperature", 0.0)) if kwargs.get("do_sample") else 0.0,
        top_p=float(kwargs.get("top_p") or 1.0))
    # As `hf`: the prompt is cut from the left to leave room for the new tokens.
    prompts = [self.tok_encode(c)[-(self._max_length - new_tokens):] for c in contexts]

    def detok(ids):
      return self.tok.decode([t for t in ids if t != self.tok.eos_id])

    decoded = batch_decode.decode(self.model.params, self.model.graphdef,
                                  self.model.model_cfg, prompts, sample, detok=detok,
                                  stops=until, batch=self._batch, seed=self._seed)
    return [postprocess_generated_text(detok(ids), until, None) for ids in decoded.tokens]
