"""Continue a prompt with a checkpoint (KV-cache decoding).

  python -m midtrain_jax.generate --from=RUN_OR_CKPT --prompt="def fib(n):" --max_new_tokens=32
  python -m midtrain_jax.generate --from=RUN_OR_CKPT --prompt_ids=1,504,28 --temperature=0.8

A text prompt starts as the model's own tokenizer starts a text
(`Tokenizer.encode_prompt`): with BOS for a model trained here, without for
SmolLM2, whose tokenizer adds none, so greedy text equals transformers'.

Greedy by default. Prints the continuation and, as its last line,
`token_ids=` followed by the generated ids separated by commas.
"""
import sys

from absl import flags

from midtrain_jax import cli
from midtrain_jax.data import tokenizer as tokenizer_lib
from midtrain_jax.evals import scoring
from midtrain_jax.model import sampling

_FROM = flags.DEFINE_string("from", None, "A run directory or checkpoint step directory.")
_PROMPT = flags.DEFINE_string("prompt", None, "Prompt text, encoded as the run's tokenizer "
                              "encodes a text (BOS first only where it adds one).")
_PROMPT_IDS = flags.DEFINE_list("prompt_ids", None, "Prompt token ids, used as given.")
_MAX_NEW_TOKENS = flags.DEFINE_integer("max_new_tokens", 32, "Tokens to generate.")
_TEMPERATURE = flags.DEFINE_float("temperature", 0.0, "0: greedy; else the softmax temperature.")
_TOP_P = flags.DEFINE_float("top_p", 1.0, "Nucleus sampling mass (with --temperature > 0).")
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed.")
_STOP_AT_EOS = flags.DEFINE_bool("stop_at_eos", True, "Stop after the tokenizer's EOS.")


def main(argv):
  del argv
  if (_PROMPT.value is None) == (_PROMPT_IDS.value is None):
    sys.exit("Give exactly one of --prompt and --prompt_ids.")
  model = scoring.load_model(_FROM.value)
  tok = tokenizer_lib.load_tokenizer(model.config.data.tokenizer)
  if _PROMPT_IDS.value is not None:
    prompt = [int(i) for i in cli.names(_PROMPT_IDS.value)]
  else:
    prompt = tok.encode_prompt(_PROMPT.value)
  bad = [i for i in prompt if not 0 <= i < model.model_cfg.vocab_size]
  if bad:
    sys.exit(f"Prompt ids {bad} are outside the model's vocabulary "
             f"(0..{model.model_cfg.vocab_size - 1}).")
  sample = sampling.SampleConfig(max_new_tokens=_MAX_NEW_TOKENS.value,
                                 temperature=_TEMPERATURE.value, top_p=_TOP_P.value,
                                 eos_id=tok.eos_id if _STOP_AT_EOS.value else -1)
  new = sampling.generate(model.params, model.graphdef, model.model_cfg, [prompt], sample,
                          seed=_SEED.value)[0]
  print(tok.decode(new))
  print("token_ids=" + ",".join(map(str, new)))


if __name__ == "__main__":
  cli.run(main, required=("from",))
