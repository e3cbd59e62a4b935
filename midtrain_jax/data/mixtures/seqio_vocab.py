"""seqio Vocabulary adapters for the tokenizers of `tokenizer.py`.

Imports seqio (and so TensorFlow): only seqio_tasks.py uses
this module, never the training pipeline. The adapter keeps the wrapped
tokenizer lazy and picklable; the TF ops call it through `tf.numpy_function`.
"""
import numpy as np

from midtrain_jax import logs
from midtrain_jax.data import tokenizer as tokenizer_lib

tf = logs.tensorflow()
seqio = logs.quiet_import("seqio")


class TokenizerVocabulary(seqio.Vocabulary):
  """A seqio Vocabulary backed by a `tokenizer.Tokenizer` (SPM or HF JSON)."""

  def __init__(self, tokenizer: tokenizer_lib.Tokenizer):
    super().__init__(extra_ids=0)
    self.tokenizer = tokenizer

  @property
  def eos_id(self) -> int:
    return self.tokenizer.eos_id

  @property
  def bos_id(self) -> int:
    return self.tokenizer.bos_id

  @property
  def pad_id(self) -> int:
    return self.tokenizer.pad_id

  @property
  def unk_id(self) -> int | None:
    return None  # Byte fallback (SPM) and byte-level BPE (HF) never emit unk.

  @property
  def _base_vocab_size(self) -> int:
    return self.tokenizer.vocab_size

  def _encode(self, s: str) -> list[int]:
    return self.tokenizer.encode(s)

  def _decode(self, ids) -> str:
    return self.tokenizer.decode([i for i in ids if i >= 0])

  def _encode_tf(self, s: tf.Tensor) -> tf.Tensor:
    def encode(text: bytes) -> np.ndarray:
      return np.asarray(self.tokenizer.encode(text.decode("utf-8")), np.int32)
    ids = tf.numpy_function(encode, [s], tf.int32, stateful=False)
    return tf.ensure_shape(ids, [None])

  def _decode_tf(self, ids: tf.Tensor) -> tf.Tensor:
    def decode(values: np.ndarray) -> bytes:
      return self.tokenizer.decode(values.tolist()).encode("utf-8")
    text = tf.numpy_function(decode, [ids], tf.string, stateful=False)
    return tf.ensure_shape(text, [])

  def __eq__(self, other) -> bool:
    return (isinstance(other, TokenizerVocabulary)
            and self.tokenizer.name == other.tokenizer.name)

  def __hash__(self) -> int:
    return hash(self.tokenizer.name)


def get_vocabulary(spec: str) -> TokenizerVocabulary:
  """Returns the seqio Vocabulary for a `data.tokenizer` value."""
  return TokenizerVocabulary(tokenizer_lib.load_tokenizer(spec))
