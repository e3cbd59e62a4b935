"""Learning-rate schedules and the AdamW chain.

Schedules (all return an optax schedule: step -> lr):
  wsd      warmup, stable at `lr`, then decay (linear / cosine / 1-sqrt) to
           `final_lr_fraction * lr` over the last `decay_steps` steps;
  cosine   warmup, then cosine to `final_lr_fraction * lr` at the end;
  constant warmup, then `lr`;
  anneal   linear from the start LR to `final_lr_fraction * start` (0 by
           default) over the run, no warmup (OLMo 2/3 midtraining).
"""
import re

import jax
import jax.numpy as jnp
import ml_collections
import optax

from midtrain_jax.train.settings import schedule_steps


def _decay(shape: str, progress):
  """Fraction of the way from peak to final LR at `progress` in [0, 1]."""
  if shape == "linear":
    return progress
  if shape == "cosine":
    return 0.5 * (1.0 - jnp.cos(jnp.pi * progress))
  if shape == "1-sqrt":
    return jnp.sqrt(progress)
  raise ValueError(f"Unknown decay shape {shape!r}")


def wsd(peak: float, total_steps: int, warmup_steps: int, decay_steps: int,
        shape: str = "linear", final_fraction: float = 0.0) -> optax.Schedule:
  """Warmup-stable-decay: linear warmup, flat, then decay over the last steps."""
  if warmup_steps + decay_steps > total_steps:
    raise ValueError(f"WSD warmup ({warmup_steps}) + decay ({decay_steps}) steps exceed "
                     f"the run's {total_steps} steps.")
  final = peak * final_fraction
  decay_start = total_steps - decay_steps

  def schedule(step):
    step = jnp.asarray(step, jnp.float32)
    warm = peak * jnp.minimum(1.0, (step + 1) / max(warmup_steps, 1))
    progress = jnp.clip((step - decay_start) / max(decay_steps, 1), 0.0, 1.0)
    decayed = peak - (peak - final) * _decay(shape, progress)
    return jnp.where(step < warmup_steps, warm, jnp.where(step < decay_start, peak, decayed))

  return schedule


def cosine(peak: float, total_steps: int, warmup_steps: int,
           final_fraction: float = 0.0) -> optax.Schedule:
  """Linear warmup then cosine decay to `final_fraction * peak` at the last step."""
  return wsd(peak, total_steps, warmup_steps, total_steps - warmup_steps, "cosine",
             final_fraction)


def constant(peak: float, warmup_steps: int) -> optax.Schedule:
  """Linear warmup then constant."""
  return lambda step: peak * jnp.minimum(1.0, (jnp.asarray(step, jnp.float32) + 1) /
                                         max(warmup_steps, 1))


def anneal(start_lr: float, total_steps: int, final_fraction: float = 0.0) -> optax.Schedule:
  """Linear decay from `start_lr` at step 0 to `final_fraction * start_lr` at the end."""
  return wsd(start_lr, total_steps, 0, total_steps, "linear", final_fraction)


def make_schedule(optim: ml_collections.ConfigDict, total_steps: int,
                  start_lr: float | None = None) -> optax.Schedule:
  """The schedule named by `optim.schedule`.

  Args:
    optim: the `optim` config section.
    total_steps: steps of this run.
    start_lr: for `anneal` with anneal_start="from_checkpoint", the base run's
      LR at its checkpoint (see `lr_at_step`); otherwise ignored.

  Returns:
    step -> learning rate.
  """
  name = optim.schedule
  warmup_steps, decay_steps = schedule_steps(optim, total_steps)
  if name == "wsd":
    return wsd(optim.lr, total_steps, warmup_steps, decay_steps, optim.decay_shape,
               optim.final_lr_fraction)
  if name == "cosine":
    return cosine(optim.lr, total_steps, warmup_steps, optim.final_lr_fraction)
  if name == "constant":
    return constant(optim.lr, warmup_steps)
  if name == "anneal":
    lr = start_lr if optim.anneal_start == "from_checkpoint" else optim.lr
    if lr is None:
      raise ValueError("optim.anneal_start='from_checkpoint' but no base-run LR was given.")
    return anneal(lr, total_steps, optim.final_lr_fraction)
  raise ValueError(f"Unknown config.optim.schedule {name!r}.")


def lr_at_step(base_config: ml_collections.ConfigDict, step: int,
               start_lr: float | None = None) -> float:
  """The LR a (base) run's schedule had at `step`: an anneal's start LR.

  `start_lr`: the base's own start LR when it was an anneal from a checkpoint.
  """
  schedule = make_schedule(base_config.optim, base_config.train.steps, start_lr=start_lr)
  return float(schedule(step))


_NO_DECAY = re.compile(r"(^|/)(\w*norm\w*|bias)(/|$)")


def decay_mask(params, decay_embeddings: bool):
  """True for parameters that get weight decay: not norms, biases or (optionally) embeddings."""
  def keep(path, _):
    name = jax.tree_util.keystr(path, simple=True, separator="/")
    if _NO_DECAY.search(name):
      return False
    return decay_embeddings or not name.startswith("embed/")
  return jax.tree_util.tree_map_with_path(keep, params)


def make_optimizer(optim: ml_collections.ConfigDict, schedule: optax.Schedule):
  """AdamW with global-norm clipping and a weight-decay mask."""
  return optax.chain(
      optax.clip_by_global_norm(optim.clip_norm),
      optax.adamw(schedule, b1=optim.b1, b2=optim.b2, eps=optim.eps,
                  weight_decay=optim.weight_decay,
                  mask=lambda p: decay_mask(p, optim.decay_embeddings)),
  )


def applied_lr(schedule: optax.Schedule, opt_state):
  """The LR the next `tx.update` applies: the schedule at the optimiser's own count.

  optax counts schedule steps inside the optimiser state, not at the train
  state's step, so this is the LR actually used (after `restart_schedule`, or
  with a restored base state, the two differ).
  """
  is_schedule = lambda s: isinstance(s, optax.ScaleByScheduleState)
  counts = [s.count for s in jax.tree.leaves(opt_state, is_leaf=is_schedule) if is_schedule(s)]
  if not counts:
    raise ValueError("The optimiser state has no LR schedule count (not from make_optimizer?).")
  return schedule(counts[0])


def restart_schedule(opt_state):
  """Restarts the LR schedule of a restored optimiser state at step 0.

  optax keeps the schedule's step count inside the optimiser state, so an
  anneal that loads its base run's optimiser state would otherwise read its
  own schedule at the base's step (past the end of a short anneal: LR 0).
  Adam's moments and bias-correction count stay as the base left them.

  Args:
    opt_state: an optimiser state of `make_optimizer`.

  Returns:
    The same state with every schedule count set to 0.
  """
  is_schedule = lambda s: isinstance(s, optax.ScaleByScheduleState)
  return jax.tree.map(
      lambda s: s._replace(count=jnp.zeros_like(s.count)) if is_schedule(s) else s,
      opt_state, is_leaf=is_schedule)

