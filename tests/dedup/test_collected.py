"""Documents collected as numpy columns: the decision's memory per document, bad batches."""
import tracemalloc

import numpy as np
import pytest

from midtrain_jax.dedup import collected, components, deduplicator, minhash, params

# The one-process decision's goal: at most ~1.5 KB per document with the default
# MinHash settings (a 512-byte signature and 32 band keys of 8 bytes are 768 of them).
BYTES_PER_DOC = 1536


def _batches(n, settings, batch=512, seed=0):
  """(keys, doc ids, fingerprints) batches as prepare adds them: random MinHash signatures
  (distinct documents), every 10th document a copy of the one before, LSH band keys."""
  rng = np.random.default_rng(seed)
  lsh = minhash.LSHIndex(settings.jaccard, settings.num_perm)
  for lo in range(0, n, batch):
    size = min(batch, n - lo)
    signatures = rng.integers(0, 1 << 32, (size, settings.num_perm), dtype=np.uint32)
    exact = [rng.bytes(16) for _ in range(size)]
    for i in range(size):
      if (lo + i) % 10 == 9:
        signatures[i], exact[i] = signatures[i - 1], exact[i - 1]
    band_keys = lsh.band_keys(signatures).tolist()
    fps = [deduplicator.Fingerprint(exact=exact[i], signature=signatures[i],
                                    band_keys=tuple(band_keys[i])) for i in range(size)]
    keys = [(1, (lo + i) // 1000, (lo + i) % 1000) for i in range(size)]
    yield keys, [f"web/part-{k[1]:05d}.jsonl:{k[2]}" for k in keys], fps


def test_the_decision_holds_about_the_fingerprints_own_bytes_per_document(monkeypatch):
  # Small working chunks: what is measured is the part that grows with the documents.
  monkeypatch.setattr(components, "ENTRY_CHUNK", 1 << 12)
  monkeypatch.setattr(components, "PAIR_VALUES", 1 << 14)
  settings, n = params.DedupParams(), 20_000
  tracemalloc.start()
  try:
    start = tracemalloc.get_traced_memory()[0]
    accumulator = components.Accumulator(settings)
    for keys, doc_ids, fps in _batches(n, settings):
      accumulator.add(keys, doc_ids, "web", fps)
    del keys, doc_ids, fps
    found = accumulator.resolve()
    peak = tracemalloc.get_traced_memory()[1] - start
  finally:
    tracemalloc.stop()
  assert peak / n < BYTES_PER_DOC, f"{peak / n:.0f} bytes per document"
  removed = [v for v in found.values() if not v.kept]
  assert len(removed) == n // 10  # The copies, and nothing else.
  assert all(v.match.level == "exact" and v.match.duplicate_of == f"web/part-{k[1]:05d}.jsonl:"
             f"{k[2] - 1}" for k, v in found.items() if not v.kept)


def _print(exact: bytes) -> deduplicator.Fingerprint:
  return deduplicator.Fingerprint(exact=exact)


def test_batches_of_unequal_lists_or_keys_of_another_width_are_errors():
  collector = collected.Collector(params.DedupParams())
  with pytest.raises(ValueError, match="2 keys, 1 doc ids and 2 fingerprints"):
    collector.add([(0,), (1,)], ["a"], "t", [_print(b"x" * 16)] * 2)
  collector.add([(0,)], ["a"], "t", [_print(b"x" * 16)])
  with pytest.raises(ValueError, match=r"exact keys of \[8, 16\] bytes"):
    collector.add([(1,)], ["b"], "t", [_print(b"y" * 8)])


def test_collected_documents_come_in_key_order():
  collector = collected.Collector(params.DedupParams())
  collector.add([(2, 0), (0, 5)], ["c", "a"], "web", [_print(b"c" * 16), _print(b"a" * 16)])
  collector.add([(1, 9)], ["b"], "math", [_print(b"a" * 16)])
  docs = collector.finish()
  assert docs.keys.tolist() == [[0, 5], [1, 9], [2, 0]]
  assert [docs.doc_id(i) for i in range(3)] == ["a", "b", "c"]
  assert [docs.task_names[t] for t in docs.tasks] == ["web", "math", "web"]
  exact = docs.groups["exact"]
  assert sorted(exact.docs.tolist()) == [0, 1, 2] and exact.keys.shape == (3, 2)
