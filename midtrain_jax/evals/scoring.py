"""A checkpoint loaded for evaluation, and the per-row loss every score is built on."""
import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import ml_collections

from midtrain_jax import config as config_lib
from midtrain_jax.model.config import ModelConfig
from midtrain_jax.train import checkpoint
from midtrain_jax.train import step as ts

LN2 = math.log(2.0)


@dataclasses.dataclass
class LoadedModel:
  """A checkpoint ready to evaluate."""
  params: dict
  graphdef: object
  model_cfg: ModelConfig
  config: ml_collections.ConfigDict
  step: int
  path: str


def load_model(path: str) -> LoadedModel:
  """Loads a checkpoint (workdir or step directory) onto the default device."""
  model_cfg = config_lib.model_config(checkpoint.load_config(path).model)
  graphdef, abstract, _ = ts.abstract_model(model_cfg)
  params, config, step = checkpoint.load_params(path, abstract)
  return LoadedModel(jax.device_put(params), graphdef, model_cfg, config, step, path)


@functools.partial(jax.jit, static_argnames=("graphdef",))
def row_nats(params, batch, mask_BT, *, graphdef):
  """Summed next-token loss (nats) per row over the positions `mask_BT` selects."""
  ce_BT, _ = ts.token_losses(params, graphdef, batch)
  return (ce_BT * mask_BT).sum(axis=-1)


def model_eval_fn(model: LoadedModel):
  """A `batch -> {nats, tokens}` function for `heldout_bpb` on one device (the
  targets `loss_mask` scores)."""
  def fn(batch):
    inputs = {k: jnp.asarray(batch[k]) for k in ts.MODEL_INPUTS}
    mask = ts.loss_weights(inputs)
    return {"nats": row_nats(model.params, inputs, mask, graphdef=model.graphdef).sum(),
            "tokens": mask.sum()}
  return fn
