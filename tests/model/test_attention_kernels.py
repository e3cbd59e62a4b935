"""Attention kernel switch: unavailable kernels fall back to xla with a warning."""
import dataclasses

import numpy as np
import pytest
from absl import logging

from midtrain_jax.model import attention_kernels
from tests import helpers
from tests.model.test_model import _logits


@pytest.mark.parametrize("requested,platform,expected", [
    ("xla", "cpu", "xla"), ("reference", "cpu", "reference"),
    ("cudnn", "gpu", "cudnn"), ("cudnn", "cuda", "cudnn"), ("cudnn", "cpu", "xla"),
    ("cudnn", "tpu", "xla"), ("splash", "cpu", "xla"), ("splash", "gpu", "xla"),
])
def test_resolve(requested, platform, expected):
  assert attention_kernels.resolve(requested, platform) == expected


@pytest.mark.parametrize("requested", ["cudnn", "splash"])
def test_unavailable_kernel_falls_back_to_xla_with_warning(requested, monkeypatch):
  warnings = []
  monkeypatch.setattr(logging, "warning", lambda msg, *args: warnings.append(msg % args))
  attention_kernels.resolve.cache_clear()
  cfg = helpers.tiny_model()
  batch = helpers.text_batch(2, 32, vocab=cfg.vocab_size, docs_per_row=2)
  got = _logits(dataclasses.replace(cfg, attention=requested), batch)
  assert any(f"model.attention={requested!r} is not available on cpu" in w and
             "falling back to 'xla'" in w for w in warnings), warnings
  xla = _logits(dataclasses.replace(cfg, attention="xla"), batch)
  np.testing.assert_array_equal(np.asarray(got), np.asarray(xla))
  reference = _logits(dataclasses.replace(cfg, attention="reference"), batch)
  np.testing.assert_allclose(np.asarray(got), np.asarray(reference), atol=2e-5, rtol=2e-5)
