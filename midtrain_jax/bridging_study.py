"""Midtraining vs continued pretraining vs general data from one base, each probed on
the target, with the proximity of each source and the timing x weight grid.

  python -m midtrain_jax.bridging_study --base=runs/demo/base/checkpoints/200 \
      --target=sft_math_synthetic --general=web_c4,web_wikipedia,web_openwebtext \
      --specialised=code_python_stdlib,math_synthetic --workdir=runs/bridging

Prints and saves (bridging.json, bridging.txt under --workdir) the table of
the target metric after the probe, forgetting and proximity per run, and the
timing x weight grid; finished runs are reused
(midtrain_jax/workflows/bridging.py; notebooks/bridging_study.ipynb).
"""
from absl import flags

from midtrain_jax import cli, settings
from midtrain_jax.evals import proximity_measures as proximity
from midtrain_jax.workflows import bridging as bridging_study

_STUDY = settings.dataclass_settings(bridging_study.StudyOptions)
_PROX = settings.dataclass_settings(proximity.ProximityOptions)
_BASE = flags.DEFINE_string("base", None, "Base checkpoint (workdir or step directory).")
_TARGET = flags.DEFINE_string("target", None, "Target task of the probe and the proximity.")
_GENERAL = flags.DEFINE_list("general", ["web_c4", "web_wikipedia", "web_openwebtext"],
                             "The general pretraining data's tasks.")
_SPECIALISED = flags.DEFINE_list("specialised", ["code_python_stdlib", "math_synthetic"],
                                 "The specialised data's tasks (equal shares).")
_WORKDIR = flags.DEFINE_string("workdir", "runs/bridging", "Folder for the runs and results.")
_TOKENS = flags.DEFINE_integer("tokens", _STUDY["tokens"].default, _STUDY["tokens"].help)
_MIX_WEIGHT = flags.DEFINE_float("mix_weight", _STUDY["mix_weight"].default,
                                 _STUDY["mix_weight"].help)
_TIMINGS = flags.DEFINE_list("timings", [f"{v:g}" for v in _STUDY["timings"].default],
                             _STUDY["timings"].help)
_WEIGHTS = flags.DEFINE_list("weights", [f"{v:g}" for v in _STUDY["weights"].default],
                             _STUDY["weights"].help)
_PROBE_STEPS = flags.DEFINE_integer("probe_steps", _STUDY["probe_steps"].default,
                                    _STUDY["probe_steps"].help)
_PROBE_LR = flags.DEFINE_float("probe_lr", _STUDY["probe_lr"].default, _STUDY["probe_lr"].help)
_PROBE_ITEMS = flags.DEFINE_integer("probe_benchmark_items",
                                    _STUDY["probe_benchmark_items"].default,
                                    _STUDY["probe_benchmark_items"].help)
_MAX_BATCHES = flags.DEFINE_integer("max_batches", _STUDY["max_batches"].default,
                                    _STUDY["max_batches"].help)
_MIXTURE = flags.DEFINE_string("mixture", _STUDY["mixture"].default, _STUDY["mixture"].help)
_PROX_STEPS = flags.DEFINE_integer("proximity_steps", _PROX["steps"].default,
                                   _PROX["steps"].help)
_PROX_LR = flags.DEFINE_float("proximity_lr", _PROX["lr"].default, _PROX["lr"].help)


def _floats(values: list[str], name: str) -> tuple[float, ...]:
  try:
    return tuple(float(v) for v in cli.names(values))
  except ValueError:
    raise ValueError(f"--{name}={','.join(values)}: expected numbers, e.g. 0,0.5.") from None


def main(argv):
  del argv
  options = bridging_study.StudyOptions(
      tokens=_TOKENS.value, mix_weight=_MIX_WEIGHT.value,
      timings=_floats(_TIMINGS.value, "timings"), weights=_floats(_WEIGHTS.value, "weights"),
      probe_steps=_PROBE_STEPS.value, probe_lr=_PROBE_LR.value,
      probe_benchmark_items=_PROBE_ITEMS.value,
      max_batches=_MAX_BATCHES.value, mixture=_MIXTURE.value)
  prox = proximity.ProximityOptions(steps=_PROX_STEPS.value, lr=_PROX_LR.value)
  bridging_study.run(_BASE.value, _TARGET.value, cli.names(_GENERAL.value),
                     cli.names(_SPECIALISED.value), _WORKDIR.value, options=options,
                     prox_options=prox)


if __name__ == "__main__":
  cli.run(main, required=("base", "target"))
