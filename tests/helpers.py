"""Shared test fixtures: a tiny model config and batches of real text."""
import dataclasses
import math
import pathlib
import sysconfig
import types

import numpy as np

from configs import anneal
from midtrain_jax import config as config_lib
from midtrain_jax.parallel import sharding
from midtrain_jax.train import loop, optim
from midtrain_jax.train import step as ts

# The repository's root folder (configs/, launch/, notebooks/ live there).
REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def tiny_model(**overrides) -> config_lib.ModelConfig:
  """A 2-layer model small enough for exact comparisons on CPU."""
  c = config_lib.base_config("tiny")
  c.model.update(dict(vocab_size=512, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2,
                      mlp_dim=128, window_pattern=(8, 0)))
  return dataclasses.replace(config_lib.model_config(c.model), **overrides)


def train_setup(cfg: config_lib.ModelConfig, mesh_shape, devices=None,
                lr: float = 1e-2) -> types.SimpleNamespace:
  """What a sharded train step of `cfg` needs: the mesh (data, fsdp, tensor sizes in
  `mesh_shape`), a constant-`lr` AdamW, the model's graphdef and the state shardings."""
  mesh = sharding.make_mesh(dict(zip(sharding.MESH_AXES, mesh_shape)), devices)
  c = config_lib.base_config("tiny").optim
  c.update(schedule="constant", lr=lr, warmup_steps=0)
  schedule = optim.make_schedule(c, 10)
  tx = optim.make_optimizer(c, schedule)
  graphdef, abstract, axes = ts.abstract_model(cfg)
  shardings = ts.state_shardings(tx, abstract, ts.param_shardings(abstract, axes, mesh), mesh)
  return types.SimpleNamespace(mesh=mesh, schedule=schedule, tx=tx, graphdef=graphdef,
                               shardings=shardings)


def stdlib_bytes(n_bytes: int = 200_000) -> np.ndarray:
  """Real text: bytes of CPython standard-library sources."""
  root = pathlib.Path(sysconfig.get_paths()["stdlib"])
  chunks, total = [], 0
  for path in sorted(root.glob("*.py")):
    data = path.read_bytes()
    chunks.append(data)
    total += len(data)
    if total >= n_bytes:
      break
  return np.frombuffer(b"".join(chunks)[:n_bytes], np.uint8).astype(np.int32)


def text_batch(batch: int, seq: int, vocab: int = 512, offset: int = 0,
               docs_per_row: int = 1) -> dict[str, np.ndarray]:
  """A packed batch of real text (byte tokens) with `docs_per_row` documents per row."""
  stream = stdlib_bytes(offset + batch * (seq + 1) + 1) % vocab
  rows = stream[offset:offset + batch * (seq + 1)].reshape(batch, seq + 1)
  bounds = np.linspace(0, seq, docs_per_row + 1).astype(int)
  segment = np.zeros((batch, seq), np.int32)
  positions = np.zeros((batch, seq), np.int32)
  for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
    segment[:, lo:hi] = i + 1
    positions[:, lo:hi] = np.arange(hi - lo)
  return dict(inputs=rows[:, :-1].astype(np.int32), targets=rows[:, 1:].astype(np.int32),
              segment_ids=segment, positions=positions,
              loss_mask=(segment > 0).astype(np.int32))


def small_config(steps: int, mesh=(8, 1, 1), schedule="constant", **data):
  """A 2-layer model on the demo mixture: compiles and runs in seconds."""
  c = anneal.get_config("size=tiny")
  c.model.update(d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, mlp_dim=128,
                 window_pattern=(16, 0))
  c.data.update(seq_len=64, batch_size=8, **data)
  c.optim.update(schedule=schedule, lr=3e-3, warmup_steps=0)
  c.train.update(steps=steps, log_every_steps=1)
  c.ckpt.update(every_steps=3, async_save=False)
  c.mesh.update(data=mesh[0], fsdp=mesh[1], tensor=mesh[2])
  return c


def assert_resumes_exactly(config, tmp_path) -> None:
  """Training 3 steps then resuming to 6 gives the losses of 6 uninterrupted steps.

  Args:
    config: steps -> the run's config.
    tmp_path: folder for the two runs.
  """
  full = loop.run(config(6), str(tmp_path / "full"))
  first = loop.run(config(3), str(tmp_path / "resumed"))
  resumed = loop.run(config(6), str(tmp_path / "resumed"))
  assert sorted(resumed.losses) == [4, 5, 6]
  for step in range(1, 7):
    got = (first.losses | resumed.losses)[step]
    assert math.isclose(got, full.losses[step], rel_tol=2e-5), step


def smollm2_tokenizer(folder: pathlib.Path) -> str:
  """SmolLM2-135M-Instruct's own tokenizer, which adds no BOS, written into `folder`.

  Read from the cached GGUF's metadata (no weights), as `convert import` writes it.

  Returns:
    The tokenizer.json path (a `data.tokenizer` value).
  """
  from midtrain_jax.interop import gguf, hf
  return hf.import_tokenizer(gguf.smollm2_path(), folder)
