"""How close each source is to a target, relative to the general pretraining data.

  python -m midtrain_jax.proximity --base=runs/demo/base/checkpoints/200 \
      --sources=math_synthetic,code_python_stdlib,math_synthetic+web_c4 \
      --target=math_synthetic --workdir=runs/proximity

For each source (`task` or `task+task`, equal shares) and for the general data
(`--general`, in the mixture's proportions): the Jensen-Shannon divergence of
its token unigram and bigram distributions to the target's, and the loss gap
(the target's held-out loss per token after a short exposure to the source
minus before), with each source's advantage over the general data (method:
midtrain_jax/evals/proximity_measures.py; runs: midtrain_jax/workflows/proximity_study.py).
"""
from absl import flags

from midtrain_jax import cli, settings
from midtrain_jax.evals import proximity_measures as proximity
from midtrain_jax.workflows import proximity_study

_OPTIONS = settings.dataclass_settings(proximity.ProximityOptions)
_BASE = flags.DEFINE_string("base", None, "Base checkpoint (workdir or step directory).")
_SOURCES = flags.DEFINE_list("sources", None, "Sources: task or task+task (equal shares).")
_TARGET = flags.DEFINE_string("target", None, "Target task (its held-out split).")
_GENERAL = flags.DEFINE_list("general", ["web_c4", "web_wikipedia", "web_openwebtext"],
                             "The general pretraining data's tasks (the reference).")
_MIXTURE = flags.DEFINE_string("mixture", "dolmino_demo", "A mixture holding every task named.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/proximity", "Folder of the exposure runs.")
_STEPS = flags.DEFINE_integer("steps", _OPTIONS["steps"].default, _OPTIONS["steps"].help)
_LR = flags.DEFINE_float("lr", _OPTIONS["lr"].default, _OPTIONS["lr"].help)
_MAX_TOKENS = flags.DEFINE_integer("max_tokens", _OPTIONS["max_tokens"].default,
                                   _OPTIONS["max_tokens"].help)
_BUCKETS = flags.DEFINE_integer("bigram_buckets", _OPTIONS["bigram_buckets"].default,
                                _OPTIONS["bigram_buckets"].help)
_MAX_BATCHES = flags.DEFINE_integer("max_batches", _OPTIONS["max_batches"].default,
                                    _OPTIONS["max_batches"].help)


def main(argv):
  del argv
  options = proximity.ProximityOptions(
      steps=_STEPS.value, lr=_LR.value, max_tokens=_MAX_TOKENS.value,
      bigram_buckets=_BUCKETS.value, max_batches=_MAX_BATCHES.value)
  sources = {}
  for text in cli.names(_SOURCES.value):
    weights = proximity.parse_source(text)
    sources[proximity.source_name(weights)] = weights
  if not sources:
    raise ValueError("--sources needs at least one source.")
  general = proximity_study.general_weights(cli.names(_GENERAL.value), _MIXTURE.value)
  result = proximity_study.measure(_BASE.value, sources, _TARGET.value, general,
                                   _WORKDIR.value, mixture=_MIXTURE.value, options=options)
  print(proximity_study.format_table(result))


if __name__ == "__main__":
  cli.run(main, required=("base", "sources", "target"))
