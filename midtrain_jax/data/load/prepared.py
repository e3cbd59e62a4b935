"""A prepared mixture as the loader sees it: opened once, never prepared here.

The loading stage reads what the preparation wrote (data/layout.py) and the
mixture's definition (data/mixtures/); it never runs any part of the
preparation. A mixture that is not prepared yet is an error naming the
command that prepares it; the commands that train (midtrain_jax/main.py and
the workflows) prepare explicitly before they build a loader.
"""
import dataclasses
import pathlib

from midtrain_jax.data import layout
from midtrain_jax.data import tokenizer as tokenizer_lib
from midtrain_jax.data.mixtures import catalog
from midtrain_jax.data.mixtures.specs import MixtureSpec, TaskSpec


class NotPreparedError(FileNotFoundError):
  """The mixture has no prepared folder yet (the message names the prepare command)."""


@dataclasses.dataclass(frozen=True)
class PreparedMixture:
  """Everything the loader needs about one prepared mixture.

  Attributes:
    directory: the prepared folder.
    manifest: its manifest (tokenizer, special ids, document layout, tasks).
    spec: the mixture's definition (task rates, weight stages).
    tasks: {task name: its definition}, in the mixture's order; `task_ids`
      index this order.
  """
  directory: pathlib.Path
  manifest: dict
  spec: MixtureSpec
  tasks: dict[str, TaskSpec]

  @property
  def task_names(self) -> list[str]:
    return list(self.tasks)

  @property
  def starts_with_bos(self) -> bool:
    """Whether its documents are `[bos] tokens [eos]` (else `tokens [eos]`)."""
    return layout.starts_with_bos(self.manifest)


def open_prepared(data_cfg) -> PreparedMixture:
  """Opens the prepared folder of `data_cfg.mixture` (checked, not prepared).

  Args:
    data_cfg: the `data` config section.

  Returns:
    The PreparedMixture.

  Raises:
    ValueError: an unknown mixture, or a folder prepared with another tokenizer
      or whose documents start otherwise than the tokenizer starts a text
      (with or without BOS).
    NotPreparedError: the folder has no finished preparation.
  """
  spec = catalog.get_mixture(data_cfg.mixture)  # An unknown mixture fails first, clearly.
  data_dir = layout.resolve_dir(data_cfg)
  manifest = layout.read_manifest(data_dir)
  if manifest is None:
    raise NotPreparedError(
        f"No prepared data in {data_dir} (missing {layout.MANIFEST}): mixture "
        f"{data_cfg.mixture!r} is not prepared. Run "
        f"`{layout.prepare_command(data_cfg.mixture, data_dir)}` "
        "(python -m midtrain_jax.main prepares it before training when "
        "data.prepare_if_missing is on).")
  if manifest["tokenizer"] != data_cfg.tokenizer:
    raise ValueError(f"{data_dir} was prepared with tokenizer {manifest['tokenizer']!r}"
                     f" but data.tokenizer is {data_cfg.tokenizer!r}; set "
                     "data.data_dir to another folder or re-prepare.")
  _check_layout(manifest, data_cfg, data_dir)
  tasks = {name: catalog.get_task(name) for name in spec.rates}
  return PreparedMixture(directory=pathlib.Path(data_dir), manifest=manifest, spec=spec,
                         tasks=tasks)


def _check_layout(manifest: dict, data_cfg, data_dir: pathlib.Path) -> None:
  """Raises a ValueError when the folder's documents start otherwise than the tokenizer
  starts a text (`layout.starts_with_bos` against `Tokenizer.adds_bos`)."""
  stored = layout.starts_with_bos(manifest)
  wanted = tokenizer_lib.load_tokenizer(data_cfg.tokenizer).adds_bos
  if stored != wanted:
    has = lambda bos: "[bos] tokens [eos]" if bos else "tokens [eos]"
    raise ValueError(
        f"{data_dir} holds documents as {has(stored)}, but tokenizer {data_cfg.tokenizer!r} "
        f"starts a text {'with' if wanted else 'without'} BOS ({has(wanted)}); set "
        f"data.data_dir to another folder or re-prepare it with "
        f"`{layout.prepare_command(data_cfg.mixture, data_dir)}` into an empty folder.")


def task_names(data_cfg) -> list[str]:
  """The task names that `task_ids` index, in order (no prepared folder needed)."""
  return list(catalog.get_mixture(data_cfg.mixture).rates)


def vocab_size(data_cfg) -> int:
  """The tokenizer's vocabulary size (for checking the model's)."""
  return tokenizer_lib.vocab_size(data_cfg.tokenizer)


def undecontaminated(data_cfg, suite) -> dict[str, list[str]]:
  """{task: benchmarks of `suite` its prepared data was not checked against}, gaps only."""
  return layout.missing_benchmarks(layout.resolve_dir(data_cfg), task_names(data_cfg),
                                   tuple(suite))
