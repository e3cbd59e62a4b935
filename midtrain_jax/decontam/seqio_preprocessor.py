"""The decontaminator as a seqio preprocessor (for Task preprocessor lists).

It runs the numpy scanner through `tf.numpy_function`, so it belongs in
offline preprocessing (seqio cache jobs, `prepare`), not in an input loop.
"""
import functools
from collections.abc import Sequence

from midtrain_jax import logs
from midtrain_jax.benchmark_data import items
from midtrain_jax.decontam import decontaminator

tf = logs.tensorflow()


@functools.lru_cache(maxsize=4)
def _shared(names: tuple[str, ...], cache_dir: str | None,
                           params: tuple[tuple[str, object], ...]
                           ) -> decontaminator.Decontaminator:
  return decontaminator.Decontaminator.from_benchmarks(names, cache_dir, **dict(params))


def decontaminate(dataset, benchmarks: Sequence[str] = (
    items.DEFAULT_SUITE), mode: str = "drop", text_key: str = "text",
                       cache_dir: str | None = None, **params):
  """seqio preprocessor that decontaminates the `text_key` feature.

  Use in a Task as
  `functools.partial(seqio_preprocessor.decontaminate, benchmarks=("gsm8k",))`.
  It runs the numpy scanner through `tf.numpy_function`, so it belongs in
  offline preprocessing (seqio cache jobs, `prepare`), not a TPU input loop.

  Args:
    dataset: a tf.data.Dataset of feature dicts with a scalar string feature
      `text_key`.
    benchmarks: benchmark names to check against.
    mode: "drop" removes contaminated examples; "cut" removes matched spans.
    text_key: the feature holding the text.
    cache_dir: index cache root.
    **params: `DecontamParams` overrides.

  Returns:
    The decontaminated dataset, with the same features.
  """
  if mode not in decontaminator.MODES:
    raise ValueError(f"mode must be one of {decontaminator.MODES}, not {mode!r}")
  deco = _shared(tuple(benchmarks), cache_dir,
                                tuple(sorted(params.items())))

  def clean_bytes(data: bytes):
    cleaned, _ = deco.clean(data.decode("utf-8", errors="replace"), mode)
    return (cleaned or "").encode("utf-8"), cleaned is not None

  def clean_example(ex):
    cleaned, keep = tf.numpy_function(clean_bytes, [ex[text_key]],
                                      [tf.string, tf.bool], stateful=False)
    cleaned.set_shape(())
    keep.set_shape(())
    return {**ex, text_key: cleaned}, keep

  return (dataset.map(clean_example)
          .filter(lambda ex, keep: keep)
          .map(lambda ex, keep: ex))
