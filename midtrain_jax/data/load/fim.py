"""Fill-in-the-middle (FIM) on token ids, StarCoder / Megatron layouts.

A document `[bos] body [eos]` (or `body [eos]`, as a tokenizer that adds no
BOS stores it: data/layout.py) is cut at two uniform random points of its body
into prefix, middle and suffix, then laid out as

  PSM: [bos] <PRE> prefix <SUF> suffix <MID> middle [eos]
  SPM: [bos] <PRE> <SUF> suffix <MID> prefix middle [eos]

where [bos] is there only when the document had it: a FIM example starts as
every other document of the model does.

(SPM as in bigcode's Megatron-LM: the model still produces prefix+middle
left to right after seeing the suffix.) A document is transformed with
probability `rate`, and of those a fraction `spm_rate` uses SPM. The random
generator is seeded per example by Grain (`MapDataset.random_map`), so a
resumed pipeline makes the same choices.
"""
import dataclasses

import grain
import numpy as np


@dataclasses.dataclass(frozen=True)
class FimIds:
  """Sentinel token ids used by the FIM layouts."""
  prefix: int
  middle: int
  suffix: int


def apply_fim(tokens: np.ndarray, rng: np.random.Generator, *, rate: float,
              spm_rate: float, ids: FimIds, with_bos: bool) -> np.ndarray:
  """Returns `tokens` in a FIM layout with probability `rate`, else unchanged.

  Args:
    tokens: int array `[bos] body [eos]`, or `body [eos]`.
    rng: per-example generator.
    rate: probability of transforming this document.
    spm_rate: probability of SPM (vs PSM) given a transform.
    ids: the sentinel ids.
    with_bos: whether documents start with BOS (the prepared folder's
      `layout.starts_with_bos`); its first token is never cut otherwise.

  Returns:
    The (possibly) rearranged int32 tokens, 3 tokens longer when transformed.
  """
  # Draw all random numbers up front so the stream does not depend on branches.
  use_fim, use_spm = rng.random() < rate, rng.random() < spm_rate
  head, tail = tokens[:int(with_bos)], tokens[-1:]
  body = tokens[len(head):-1]
  cuts = np.sort(rng.integers(0, len(body) + 1, size=2))
  if not use_fim or len(body) < 2:
    return tokens
  prefix, middle, suffix = np.split(body, cuts)
  if use_spm:
    parts = (head, [ids.prefix, ids.suffix], suffix, [ids.middle], prefix, middle, tail)
  else:
    parts = (head, [ids.prefix], prefix, [ids.suffix], suffix, [ids.middle], middle, tail)
  return np.concatenate([np.asarray(p, np.int32) for p in parts])


class FimTransform(grain.transforms.RandomMap):
  """Grain random map applying FIM to the `tokens` of a document element."""

  def __init__(self, *, rate: float, spm_rate: float, ids: FimIds, with_bos: bool):
    self.rate, self.spm_rate, self.ids, self.with_bos = rate, spm_rate, ids, with_bos

  def random_map(self, element: dict, rng: np.random.Generator) -> dict:
    return dict(element, tokens=apply_fim(element["tokens"], rng, rate=self.rate,
                                          spm_rate=self.spm_rate, ids=self.ids,
                                          with_bos=self.with_bos))
