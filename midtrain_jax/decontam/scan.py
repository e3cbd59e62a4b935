"""Finds benchmark items in training text with a `BenchmarkIndex`.

Scanning a batch of documents:
  1. tokenise all documents as one buffer (a few numpy passes);
  2. hash every (or every k-th) n-gram and keep those whose hash is in a
     lookup table: a bitmap rejects almost all, `searchsorted` confirms;
  3. group the candidates per (document, item) and verify each occurrence
     around its aligned position: exact match for short questions, covered
     fraction of question tokens for long ones, plus answer / passage near it.

Pure numpy; no TensorFlow.
"""

import dataclasses
from collections.abc import Sequence

import numpy as np

from midtrain_jax.decontam import index as dindex

_BITMAP_BITS = 27  # 16 MiB: ~1% of random n-grams pass for 1.3M entries.


@dataclasses.dataclass(frozen=True)
class Hit:
  """One benchmark item found in one document.

  Attributes:
    benchmark: benchmark name.
    item_id: the item's id within the benchmark.
    score: covered (IDF-weighted) fraction of the question; 1.0 for exact.
    span: (start, end) character offsets of the matched text in the document.
    rule: "exact" (short question) or "overlap" (long question).
    answer_score: covered fraction of the answer near the question, or -1
      when the item has no usable answer.
    passage_score: fraction of passage n-grams near the question, or -1.
  """
  benchmark: str
  item_id: str
  score: float
  span: tuple[int, int]
  rule: str
  answer_score: float = -1.0
  passage_score: float = -1.0


class _Table:
  """A lookup table plus its bitmap prefilter."""

  def __init__(self, table: dindex.LookupTable):
    self.size = table.size
    self.hashes, self.items, self.offsets = (table.hashes, table.items,
                                             table.offsets)
    self.bitmap = np.zeros(1 << (_BITMAP_BITS - 3), dtype=np.uint8)
    slot = table.hashes >> np.uint64(64 - _BITMAP_BITS)
    np.bitwise_or.at(self.bitmap, slot >> np.uint64(3),
                     (1 << (slot & np.uint64(7))).astype(np.uint8))

  def lookup(self, grams: np.ndarray, positions: np.ndarray):
    """Returns (doc positions, items, question offsets) of all matches."""
    slot = grams >> np.uint64(64 - _BITMAP_BITS)
    maybe = (self.bitmap[slot >> np.uint64(3)] >> (slot & np.uint64(7)).astype(
        np.uint8)) & 1
    idx = np.flatnonzero(maybe)
    grams, positions = grams[idx], positions[idx]
    lo = np.searchsorted(self.hashes, grams, side="left")
    hi = np.searchsorted(self.hashes, grams, side="right")
    count = hi - lo
    if not count.any():
      empty = np.zeros(0, np.int64)
      return empty, empty, empty
    # Expand each match range [lo, hi) into its entries.
    rep = np.repeat(np.arange(count.size), count)
    entry = lo[rep] + (np.arange(rep.size) - np.repeat(np.cumsum(count) - count,
                                                       count))
    return positions[rep], self.items[entry], self.offsets[entry]


def _covered(query_grams: np.ndarray, window_grams: np.ndarray, length: int,
             k: int) -> np.ndarray:
  """Which of `length` query tokens lie in a k-gram found in the window."""
  found = np.isin(query_grams, window_grams)
  covered = np.zeros(length, dtype=bool)
  for j in range(k):
    covered[j:j + found.size] |= found
  return covered


class Scanner:
  """Scans text for the items of a `BenchmarkIndex`."""

  def __init__(self, index: dindex.BenchmarkIndex):
    self.index = index
    self.params = index.params
    self._tables = [_Table(t) for t in index.tables]
    self._key_len = np.where(index.key_is_answer, index.answer.lengths(),
                             index.question.lengths())

  def scan(self, texts: Sequence[str]) -> list[list[Hit]]:
    """Returns the hits of each text, in order of position.

    Args:
      texts: documents.

    Returns:
      One list of hits per document.
    """
    datas = [dindex.encode(t) for t in texts]
    # Documents are joined by a byte that is not part of any token.
    byte_starts = np.zeros(len(datas) + 1, dtype=np.int64)
    byte_starts[1:] = np.cumsum([len(d) + 1 for d in datas])
    tokens = dindex.tokenize(b"\n".join(datas))
    doc_of = np.searchsorted(byte_starts, tokens.starts, side="right") - 1
    doc_tok = np.searchsorted(tokens.starts, byte_starts)
    cands = self._candidates(tokens.hashes, doc_of)
    results: list[list[Hit]] = [[] for _ in texts]
    if cands[0].size == 0:
      return results
    pos, items, offs = cands
    aligned = pos - offs
    order = np.lexsort((aligned, items, doc_of[pos]))
    for doc, item, starts in _groups(doc_of[pos][order], items[order],
                                     aligned[order], self._qlen(items[order])):
      lo, hi = doc_tok[doc], doc_tok[doc + 1]
      hit = self._verify(tokens, lo, hi, item, starts)
      if hit is not None:
        results[doc].append(self._to_hit(hit, item, texts[doc], datas[doc],
                                         tokens, byte_starts[doc]))
    for hits in results:
      hits.sort(key=lambda h: h.span)
    return results

  def _qlen(self, items: np.ndarray) -> np.ndarray:
    return self._key_len[items]

  def _candidates(self, hashes: np.ndarray, doc_of: np.ndarray):
    """All (doc position, item, question offset) from the lookup tables."""
    parts = []
    stride = self.params.sample_stride
    for table in self._tables:
      grams = dindex.ngram_hashes(hashes, table.size)
      positions = np.arange(grams.size)
      # Short-question tables are few entries; sample only the main n-grams.
      if stride > 1 and table.size == self.params.ngram:
        grams, positions = grams[::stride], positions[::stride]
      # An n-gram that straddles two documents is not text of either.
      inside = doc_of[positions] == doc_of[positions + table.size - 1]
      parts.append(table.lookup(grams[inside], positions[inside]))
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))

  def _verify(self, tokens, lo, hi, item, starts):
    """Scores one (document, item) occurrence; returns a match or None."""
    p, index = self.params, self.index
    q = index.question.row(item)
    n = q.size
    doc = tokens.hashes
    answer = index.answer.row(item)
    passage = index.passage.row(item)
    if index.key_is_answer[item]:
      return self._verify_by_answer(doc, lo, hi, q, answer, starts)
    needs_support = passage.size > 0 or index.info[item] < p.min_info
    if n <= p.short_len:
      match = None
      for a in np.unique(starts):
        if lo <= a and a + n <= hi and np.array_equal(doc[a:a + n], q):
          match = (int(a), int(a + n))
          break
      if match is None:
        return None
      score, rule = 1.0, "exact"
    else:
      k = p.overlap_ngram
      slack = max(8, n // 4)
      w_lo = max(lo, int(starts.min()) - slack)
      w_hi = min(hi, int(starts.max()) + n + slack)
      window_grams = dindex.ngram_hashes(doc[w_lo:w_hi], k)
      covered = _covered(dindex.ngram_hashes(q, k), window_grams, n, k)
      w = index.weights.row(item)
      score = float((w * covered).sum() / max(w.sum(), 1e-9))
      if score < p.assisted_threshold:
        return None
      where = np.flatnonzero(np.isin(window_grams, dindex.ngram_hashes(q, k)))
      match = (w_lo + int(where[0]), w_lo + int(where[-1]) + k)
      # Repetitive questions ("sqrt 3 + sqrt 5 + ...") are covered by a few
      # k-grams; the document must also hold comparably much text.
      if match[1] - match[0] < p.min_span_ratio * n:
        return None
      rule = "overlap"
    a_score, a_end = self._answer_score(doc, match[1], hi, answer)
    p_score = self._passage_score(doc, match, lo, hi, passage)
    # A passage item's answer is often just "yes"/"no": only the passage counts.
    supported = (p_score >= p.passage_threshold if passage.size
                 else a_score >= p.answer_threshold)
    if rule == "exact":
      ok = supported or not needs_support
    else:
      ok = (score >= p.threshold and (supported or passage.size == 0)) or (
          supported)
    if not ok:
      return None
    end = max(match[1], a_end) if a_score >= p.answer_threshold else match[1]
    return match[0], end, score, rule, a_score, p_score

  def _verify_by_answer(self, doc, lo, hi, question, answer, starts):
    """Tiny question: exact answer, with the question shortly before it."""
    n = answer.size
    for a in np.unique(starts):
      if lo <= a and a + n <= hi and np.array_equal(doc[a:a + n], answer):
        before = doc[max(lo, a - self.params.answer_window - question.size):a]
        if before.size < question.size:
          continue
        same = np.lib.stride_tricks.sliding_window_view(
            before, question.size) == question
        where = np.flatnonzero(same.all(axis=1))
        if where.size:
          start = int(a) - before.size + int(where[-1])
          return start, int(a + n), 1.0, "exact", 1.0, -1.0
    return None

  def _answer_score(self, doc, q_end, hi, answer):
    """Covered fraction of the answer just after the question (or -1)."""
    if answer.size == 0:
      return -1.0, q_end
    p = self.params
    w_hi = min(hi, q_end + p.answer_window + answer.size)
    window = doc[q_end:w_hi]
    k = min(p.overlap_ngram, answer.size)
    grams = dindex.ngram_hashes(window, k)
    found = np.isin(grams, dindex.ngram_hashes(answer, k))
    if not found.any():
      return 0.0, q_end
    covered = _covered(dindex.ngram_hashes(answer, k), grams, answer.size, k)
    return float(covered.mean()), q_end + int(np.flatnonzero(found)[-1]) + k

  def _passage_score(self, doc, match, lo, hi, passage):
    """Fraction of the passage's n-grams around the question (or -1)."""
    if passage.size == 0:
      return -1.0
    reach = passage.size + self.params.answer_window
    window = doc[max(lo, match[0] - reach):min(hi, match[1] + reach)]
    grams = dindex.ngram_hashes(window, self.params.passage_ngram)
    return float(np.isin(passage, grams).mean())

  def _to_hit(self, match, item, text, data, tokens, base):
    start_tok, end_tok, score, rule, a_score, p_score = match
    b0 = int(tokens.starts[start_tok] - base)
    b1 = int(tokens.ends[end_tok - 1] - base)
    if len(data) != len(text):  # Non-ASCII: byte offsets != char offsets.
      b0 = len(data[:b0].decode("utf-8", errors="replace"))
      b1 = len(data[:b1].decode("utf-8", errors="replace"))
    index = self.index
    return Hit(benchmark=index.benchmarks[index.item_benchmark[item]],
               item_id=str(index.item_ids[item]), score=round(score, 4),
               span=(b0, b1), rule=rule, answer_score=round(a_score, 4),
               passage_score=round(p_score, 4))


def _groups(docs, items, aligned, qlens):
  """Splits sorted candidates into (doc, item, aligned starts) occurrences."""
  n = docs.size
  new = np.ones(n, dtype=bool)
  new[1:] = ((docs[1:] != docs[:-1]) | (items[1:] != items[:-1]) |
             (aligned[1:] - aligned[:-1] > qlens[1:]))
  bounds = np.append(np.flatnonzero(new), n)
  for s, e in zip(bounds[:-1], bounds[1:]):
    yield int(docs[s]), int(items[s]), aligned[s:e]
