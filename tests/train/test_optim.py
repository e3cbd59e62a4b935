"""Schedule values at their boundaries, the weight-decay mask, anneal-from-checkpoint LR,
restarting a restored optimiser's schedule."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import pretrain
from midtrain_jax import config as config_lib
from midtrain_jax.train import optim


def _lr(schedule, step):
  return float(schedule(step))


def isclose(a, b):
  return math.isclose(a, b, rel_tol=1e-6)


def test_wsd_boundaries():
  s = optim.wsd(1.0, total_steps=100, warmup_steps=10, decay_steps=20)
  assert isclose(_lr(s, 0), 0.1)
  assert isclose(_lr(s, 9), 1.0)
  assert _lr(s, 10) == 1.0 and _lr(s, 80) == 1.0  # Stable through the decay start.
  assert math.isclose(_lr(s, 90), 0.5, rel_tol=1e-6)  # Halfway down, linear.
  assert _lr(s, 100) == 0.0


@pytest.mark.parametrize("shape,halfway", [("linear", 0.5), ("cosine", 0.5),
                                           ("1-sqrt", 1 - math.sqrt(0.5))])
def test_wsd_decay_shapes_and_final_fraction(shape, halfway):
  s = optim.wsd(2.0, 100, 0, 40, shape=shape, final_fraction=0.1)
  final = 0.2
  assert math.isclose(_lr(s, 80), final + (2.0 - final) * halfway, rel_tol=1e-5)
  assert math.isclose(_lr(s, 100), final, rel_tol=1e-6)
  assert math.isclose(_lr(s, 59), 2.0)


def test_wsd_rejects_impossible_lengths():
  with pytest.raises(ValueError, match="exceed"):
    optim.wsd(1.0, 100, 50, 60)


def test_cosine_constant_anneal():
  c = optim.cosine(1.0, 110, 10, final_fraction=0.0)
  assert math.isclose(_lr(c, 9), 1.0) and math.isclose(_lr(c, 60), 0.5, rel_tol=1e-6)
  assert _lr(c, 110) == 0.0
  k = optim.constant(3.0, 4)
  assert isclose(_lr(k, 0), 0.75) and _lr(k, 1000) == 3.0
  a = optim.anneal(2.07e-4, 1000)
  assert math.isclose(_lr(a, 0), 2.07e-4, rel_tol=1e-6)  # No warmup.
  assert math.isclose(_lr(a, 500), 1.035e-4, rel_tol=1e-5)
  assert _lr(a, 1000) == 0.0


def test_lr_at_step_reads_the_base_schedule():
  base = config_lib.base_config("tiny")
  base.optim.update(schedule="wsd", lr=1e-3, warmup_steps=100, decay_fraction=0.2)
  base.train.steps = 1000
  assert math.isclose(optim.lr_at_step(base, 50), 0.51e-3, rel_tol=1e-5)
  assert isclose(optim.lr_at_step(base, 500), 1e-3)
  assert math.isclose(optim.lr_at_step(base, 900), 0.5e-3, rel_tol=1e-5)


def test_anneal_from_checkpoint_uses_given_start():
  c = config_lib.base_config("tiny").optim
  c.schedule, c.anneal_start = "anneal", "from_checkpoint"
  assert math.isclose(_lr(optim.make_schedule(c, 10, start_lr=4e-4), 0), 4e-4, rel_tol=1e-6)
  with pytest.raises(ValueError, match="base-run LR"):
    optim.make_schedule(c, 10)


def test_decay_mask():
  params = {"embed": {"embedding": jnp.ones((4, 2))},
            "blocks": {0: {"attn_norm": {"scale": jnp.ones(2)},
                           "mlp": {"gate": {"kernel": jnp.ones((2, 2))}},
                           "attn": {"q_norm": {"scale": jnp.ones(2)}}}},
            "lm_head": {"kernel": jnp.ones((2, 4)), "bias": jnp.ones(4)}}
  mask = optim.decay_mask(params, decay_embeddings=False)
  assert mask["embed"]["embedding"] is False
  assert mask["blocks"][0]["attn_norm"]["scale"] is False
  assert mask["blocks"][0]["attn"]["q_norm"]["scale"] is False
  assert mask["blocks"][0]["mlp"]["gate"]["kernel"] is True
  assert mask["lm_head"]["kernel"] is True and mask["lm_head"]["bias"] is False
  assert optim.decay_mask(params, decay_embeddings=True)["embed"]["embedding"] is True


def test_restart_schedule_resets_only_the_schedule_count():
  c = config_lib.base_config("tiny").optim
  c.update(schedule="anneal", anneal_start="config", lr=1e-3, warmup_steps=0)
  schedule = optim.make_schedule(c, 4)
  tx = optim.make_optimizer(c, schedule)
  params = {"w": jnp.ones((3, 3))}
  state = tx.init(params)
  for _ in range(4):  # The base run's steps: its schedule is at its end (LR 0).
    _, state = tx.update({"w": jnp.full((3, 3), 0.5)}, state, params)
  assert float(optim.applied_lr(schedule, state)) == 0.0
  restarted = optim.restart_schedule(state)
  assert isclose(float(optim.applied_lr(schedule, restarted)), 1e-3)
  # Adam's moments and its bias-correction count are the base's, untouched.
  adam = lambda s: [x for x in jax.tree.leaves(s[1], is_leaf=_is_adam) if _is_adam(x)][0]
  before, after = adam(state), adam(restarted)
  assert int(after.count) == int(before.count) == 4
  np.testing.assert_array_equal(after.mu["w"], before.mu["w"])
  np.testing.assert_array_equal(after.nu["w"], before.nu["w"])
  # The first update after the restart applies the schedule's step-0 LR.
  updates, _ = tx.update({"w": jnp.full((3, 3), 0.5)}, restarted, params)
  assert float(jnp.abs(updates["w"]).max()) > 0.0


def _is_adam(x):
  return isinstance(x, optax.ScaleByAdamState)


def test_warmup_and_decay_as_fractions_scale_with_the_run():
  c = pretrain.get_config("size=tiny")
  c.unlock()
  c.train.steps = 60  # Shorter than the preset's 300: its warmup shrinks with it.
  config_lib.validate(c)
  assert config_lib.schedule_steps(c.optim, 60) == (9, 12)
  s = optim.make_schedule(c.optim, 60)
  assert _lr(s, 8) == pytest.approx(c.optim.lr) and _lr(s, 60) == 0.0
  c.optim.warmup_steps = 10
  with pytest.raises(ValueError, match="warmup_steps=10 and config.optim.warmup_fraction"):
    config_lib.validate(c)
  c.optim.update(warmup_steps=50, warmup_fraction=0.0)
  with pytest.raises(ValueError, match=r"wsd schedule's warmup \(50\) \+ decay \(12\)"):
    config_lib.validate(c)
  c.optim.update(warmup_steps=0, decay_fraction=1.5)
  with pytest.raises(ValueError, match="decay_fraction=1.5 must be in"):
    config_lib.validate(c)
