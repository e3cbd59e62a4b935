"""The `optim`, `train` and `ckpt` settings, declared once.

Readers: train/optim.py (optim), train/loop.py (train), train/checkpoint.py
(ckpt, train.init_from / init_optimizer). `schedule_steps` is how a run's
warmup and WSD decay lengths follow from them.
"""
from midtrain_jax import settings

S = settings.Setting
_POSITIVE, _NON_NEGATIVE, _FRACTION = settings.POSITIVE, settings.NON_NEGATIVE, settings.FRACTION


def schedule_steps(optim, total_steps: int) -> tuple[int, int]:
  """(warmup, WSD decay) steps of a run: explicit step counts, else fractions of the run."""
  warmup = optim.warmup_steps or int(round(optim.warmup_fraction * total_steps))
  decay = optim.decay_steps or int(round(optim.decay_fraction * total_steps))
  return warmup, decay


def _check_warmup(optim, path: str) -> None:
  if optim.warmup_steps and optim.warmup_fraction:
    raise ValueError(f"{path}.warmup_steps={optim.warmup_steps} and "
                     f"{path}.warmup_fraction={optim.warmup_fraction} are both set; "
                     "give the warmup one way (set the other to 0).")


OPTIM = settings.Section({
    "schedule": S("wsd", "Learning-rate schedule (train/optim.py): wsd (warmup, stable, "
                  "decay), cosine, constant, or anneal (linear from the start LR, no "
                  "warmup).", choices=("wsd", "cosine", "constant", "anneal")),
    "lr": S(3e-3, "Peak learning rate.", check=_NON_NEGATIVE),
    "warmup_steps": S(100, "Warmup steps.", check=_NON_NEGATIVE),
    "warmup_fraction": S(0.0, "Warmup as a fraction of the run instead (used when "
                         "warmup_steps is 0), so shortening a run shortens its warmup.",
                         check=_FRACTION),
    "decay_steps": S(0, "WSD decay length; 0: decay_fraction of the run.",
                     check=_NON_NEGATIVE),
    "decay_fraction": S(0.2, "WSD decay length as a fraction of the run.", check=_FRACTION),
    "decay_shape": S("linear", "Shape of the WSD decay.",
                     choices=("linear", "cosine", "1-sqrt")),
    "final_lr_fraction": S(0.0, "The schedule ends at this fraction of optim.lr.",
                           check=_FRACTION),
    "anneal_start": S("config", "Anneal start LR: config uses optim.lr; from_checkpoint the "
                      "LR the base run's schedule had at the step of train.init_from.",
                      choices=("config", "from_checkpoint")),
    "b1": S(0.9, "AdamW beta1.", check=_FRACTION),
    "b2": S(0.95, "AdamW beta2.", check=_FRACTION),
    "eps": S(1e-8, "AdamW epsilon.", check=_POSITIVE),
    "weight_decay": S(0.1, "AdamW decoupled weight decay.", check=_NON_NEGATIVE),
    "decay_embeddings": S(False, "Also apply weight decay to the embeddings."),
    "clip_norm": S(1.0, "Global gradient-norm clipping threshold.", check=_NON_NEGATIVE),
}, help="the optimiser and its learning-rate schedule (train/optim.py).",
   checks=(_check_warmup,))

TRAIN = settings.Section({
    "steps": S(200, "Training steps of this run.", check=_POSITIVE),
    "microbatches": S(1, "Gradient accumulation: each step's batch (data.batch_size rows) "
                      "runs in this many sequential microbatches. A MoE model logs the "
                      "whole batch's load-balancing loss; its gradient is that of each "
                      "microbatch's own balance loss weighted by its tokens (model/moe.py), "
                      "and capacity dispatch fills expert buffers per microbatch.",
                      check=_POSITIVE),
    "z_loss": S(1e-5, "Weight of the output z-loss.", check=_NON_NEGATIVE),
    "init_from": S("", "Base checkpoint (a step directory or a workdir)."),
    "init_optimizer": S(True, "Also load the base run's optimiser state."),
    "log_every_steps": S(10, "Steps between progress lines and metrics.", check=_POSITIVE),
    "on_nonfinite": S("stop", "A step whose loss, gradient, update or parameter norm is NaN "
                      "or infinite: stop ends the run before anything of that step is saved, "
                      "naming the step and what was non-finite; skip leaves the state as it "
                      "was (the update is not applied; only the step count and the data "
                      "position advance), counts the step and goes on.",
                      choices=("stop", "skip")),
    "max_consecutive_skips": S(5, "With on_nonfinite=skip: the run stops after this many "
                               "skipped steps in a row.", check=_POSITIVE),
}, help="the training run (train/loop.py).")

CKPT = settings.Section({
    "every_steps": S(100, "Steps between checkpoints.", check=_POSITIVE),
    "keep": S(3, "Checkpoints kept: older ones are deleted once a newer one is complete, "
              "so the newest complete checkpoint is never deleted.", check=_POSITIVE),
    "async_save": S(True, "Write checkpoints in the background."),
    "checksums": S(True, "Record each checkpoint file's CRC32 in the step's manifest and "
                   "check it before restoring (reads every file once more after the save and "
                   "before loading); off, only sizes are checked: for very large checkpoints "
                   "on remote storage."),
}, help="checkpointing (train/checkpoint.py).")


def _check_schedule_fits(config) -> None:
  """Schedule lengths that cannot fit the run fail here, before any data work."""
  optim, total_steps = config.optim, config.train.steps
  if optim.anneal_start == "from_checkpoint" and not config.train.init_from:
    raise ValueError("config.optim.anneal_start='from_checkpoint' needs "
                     "config.train.init_from (the base checkpoint).")
  warmup, decay = schedule_steps(optim, total_steps)
  needed = {"wsd": warmup + decay, "cosine": warmup}.get(optim.schedule, 0)
  if needed > total_steps:
    what = f"warmup ({warmup}) + decay ({decay})" if optim.schedule == "wsd" else \
        f"warmup ({warmup})"
    raise ValueError(
        f"The {optim.schedule} schedule's {what} steps exceed config.train.steps={total_steps} "
        "(optim.warmup_steps/warmup_fraction, optim.decay_steps/decay_fraction): lower them, "
        "or give them as fractions of the run so they scale with train.steps.")


def _check_microbatches(config) -> None:
  if config.data.batch_size % config.train.microbatches:
    raise ValueError(f"config.data.batch_size={config.data.batch_size} does not split into "
                     f"config.train.microbatches={config.train.microbatches} equal "
                     "microbatches.")


# Checks across sections (run on the whole config, after every key is valid).
CHECKS = (_check_schedule_fits, _check_microbatches)
