"""Both proximity measures order constructed sources of known closeness to a target:
the target's own data, half of it mixed with unrelated text, the unrelated text."""
import pytest

from midtrain_jax.evals import proximity_measures as proximity
from midtrain_jax.workflows import proximity_study, training
from tests.helpers import small_config

pytestmark = pytest.mark.slow

SOURCES = {"target": {"math_synthetic": 1.0},
           "half": {"math_synthetic": 0.5, "code_python_stdlib": 0.5},
           "unrelated": {"code_python_stdlib": 1.0}}


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
  root = tmp_path_factory.mktemp("proximity")
  training.run(small_config(4), str(root / "base"))
  general = proximity_study.general_weights(["web_c4", "web_wikipedia", "web_openwebtext"],
                                            "dolmino_demo")
  options = proximity.ProximityOptions(steps=4, lr=3e-3, max_tokens=20_000, max_batches=2)
  return proximity_study.measure(str(root / "base"), SOURCES, "math_synthetic", general,
                                 str(root / "runs"), options=options, log=lambda _: None)


@pytest.mark.parametrize("measure", proximity.MEASURES)
def test_constructed_sources_are_ordered(measured, measure):
  values = [measured["sources"][name][measure] for name in SOURCES]
  assert values[0] < values[1] < values[2], values
  # The advantage over the general data is the same order, reversed.
  advantages = [measured["sources"][name][f"advantage/{measure}"] for name in SOURCES]
  assert advantages[0] > advantages[1] > advantages[2]
  assert measured["sources"]["target"][f"advantage/{measure}"] > 0


def test_the_table_lists_every_source(measured):
  text = proximity_study.format_table(measured)
  assert all(name in text for name in ("general", *SOURCES))
