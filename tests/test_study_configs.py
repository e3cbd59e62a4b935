"""The schedule-study and timing x weight configs build what they promise."""
import math

import pytest

from configs import schedule_study, timing_weight
from midtrain_jax.train import optim


@pytest.mark.parametrize("variant,final", [("wsd", 0.0), ("wsd_tenth", 0.1),
                                           ("cosine", 0.0), ("cosine_tenth", 0.1)])
def test_schedule_variants_end_where_they_say(variant, final):
  c = schedule_study.get_config(f"variant={variant},steps=200")
  schedule = optim.make_schedule(c.optim, c.train.steps)
  assert c.optim.warmup_steps == 4  # 2000 of 100k steps, scaled to 200.
  assert math.isclose(float(schedule(c.train.steps)), final * c.optim.lr, abs_tol=1e-9)
  assert math.isclose(float(schedule(100)), c.optim.lr, rel_tol=1e-6) == (variant.startswith("wsd"))


def test_schedule_study_rejects_unknown_variant():
  with pytest.raises(ValueError, match="Unknown variant 'linear'"):
    schedule_study.get_config("variant=linear")


def test_timing_weight_stages():
  c = timing_weight.get_config("start=0.5,weight=0.3,steps=100")
  (s0, web), (s1, later) = c.data.weight_stages
  assert (s0, s1) == (0, 50) and "math_synthetic" not in web
  assert math.isclose(later["math_synthetic"], 0.3) and math.isclose(sum(later.values()), 1.0)
  (start, only), = timing_weight.get_config("start=0.0,weight=0.5").data.weight_stages
  assert start == 0 and math.isclose(only["math_synthetic"], 0.5)
  with pytest.raises(ValueError, match="weight=1.5"):
    timing_weight.get_config("weight=1.5")
