"""Cleaned documents out: numbered .jsonl.gz shards (what decontam and dedup write)."""
import contextlib
import gzip
import json
import os

from midtrain_jax import files


class ShardWriter:
  """Writes records to numbered .jsonl.gz shards of bounded size.

  A shard gets its final name only when closed, so an interrupted scan never
  leaves a truncated shard that reads as complete.
  """

  def __init__(self, directory: str, shard_docs: int):
    self.directory, self.shard_docs = directory, shard_docs
    self.count = 0
    self._shard: contextlib.ExitStack | None = None  # The open shard's file and gzip stream.
    self._stream = None
    os.makedirs(directory, exist_ok=True)

  def write(self, record: dict):
    if self._shard is None or self.count % self.shard_docs == 0:
      self.close()
      name = f"part-{self.count // self.shard_docs:05d}.jsonl.gz"
      self._shard = contextlib.ExitStack()
      raw = self._shard.enter_context(files.open_atomic(os.path.join(self.directory, name), "wb"))
      self._stream = self._shard.enter_context(gzip.open(raw, "wt", encoding="utf-8"))
    self._stream.write(json.dumps(record, ensure_ascii=False) + "\n")
    self.count += 1

  def close(self):
    if self._shard is not None:
      self._shard.close()
      self._shard = self._stream = None
