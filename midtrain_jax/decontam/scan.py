"""Finds benchmark items in training text with a `BenchmarkIndex`.

Scanning a batch of documents:
  1. tokenise all documents as one buffer (a few numpy passes);
  2. hash every (or every k-th) n-gram and keep those whose hash is in a
     lookup table: a bitmap rejects almost all, `searchsorted` confirms;
  3. group the candidates per (document, key) - a key is an item's question,
     or its free-form answer - and verify each occurrence that holds enough
     of the key's n-grams around its aligned position: exact match for short
     questions (one changed word with the answer after it), covered weight
     or a long verbatim run for long ones, plus answer / passage near it;
     an answer key alone must be exact or mostly covered.

Pure numpy; no TensorFlow.
"""

import dataclasses
from collections.abc import Sequence

import numpy as np

from midtrain_jax.decontam import hashing, normalize
from midtrain_jax.decontam import index as index_lib

_BITMAP_BITS = 27  # 16 MiB: ~1% of random n-grams pass for 1.3M entries.


@dataclasses.dataclass(frozen=True)
class Hit:
  """One benchmark item found in one document.

  Attributes:
    benchmark: benchmark name.
    item_id: the item's id within the benchmark.
    score: covered (IDF-weighted) fraction of the question (of the answer for
      rule "answer"); 1.0 for exact.
    span: (start, end) character offsets of the matched text in the document.
    rule: "exact" (short question, verbatim), "overlap" (long question, or a
      short one with one word changed and its answer nearby), "partial" (a
      long verbatim run of a longer question) or "answer" (the item's
      free-form answer, e.g. a worked solution or code, without the question).
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

  def __init__(self, table: index_lib.LookupTable):
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


@dataclasses.dataclass(frozen=True)
class _Key:
  """A key's tokens (a question, or a free-form answer), weights and sum."""
  tokens: np.ndarray
  weights: np.ndarray
  info: float


class Scanner:
  """Scans text for the items of a `BenchmarkIndex`."""

  def __init__(self, index: index_lib.BenchmarkIndex):
    self.index = index
    self.params = index.params
    self._tables = [_Table(t) for t in index.tables]
    # Key ids: item i's question (answer if tiny) is i, its answer n + i.
    n = index.num_items
    self._key_len = np.concatenate([
        np.where(index.key_is_answer, index.answer.lengths(),
                 index.question.lengths()), index.answer.lengths()])
    self._num_items = n
    # Hits a long key needs before it is verified (see min_hit_fraction).
    p = self.params
    grams = np.zeros(2 * n, np.int64)
    for t in index.tables:
      if t.size == p.ngram:
        grams = np.bincount(t.items, minlength=2 * n)
    self._min_hits = np.maximum(
        1, np.ceil(p.min_hit_fraction * grams / p.sample_stride)).astype(np.int64)
    self._min_hits[self._key_len <= p.short_len] = 1

  def scan(self, texts: Sequence[str]) -> list[list[Hit]]:
    """Returns the hits of each text, in order of position.

    Args:
      texts: documents.

    Returns:
      One list of hits per document.
    """
    datas = [normalize.encode(t) for t in texts]
    # Documents are joined by a byte that is not part of any token.
    byte_starts = np.zeros(len(datas) + 1, dtype=np.int64)
    byte_starts[1:] = np.cumsum([len(d) + 1 for d in datas])
    tokens = normalize.tokenize(b"\n".join(datas))
    doc_of = np.searchsorted(byte_starts, tokens.starts, side="right") - 1
    doc_tok = np.searchsorted(tokens.starts, byte_starts)
    cands = self._candidates(tokens.hashes, doc_of)
    results: list[list[Hit]] = [[] for _ in texts]
    if cands[0].size == 0:
      return results
    pos, keys, offs = cands
    aligned = pos - offs
    order = np.lexsort((aligned, keys, doc_of[pos]))
    matches: dict[int, list] = {}
    for doc, key, starts in _groups(doc_of[pos][order], keys[order],
                                    aligned[order], self._key_len[keys[order]]):
      if starts.size < self._min_hits[key]:
        continue
      lo, hi = doc_tok[doc], doc_tok[doc + 1]
      item = key % self._num_items
      if key >= self._num_items:
        match = self._verify_answer(tokens.hashes, lo, hi, item, starts)
      else:
        match = self._verify(tokens.hashes, lo, hi, item, starts)
      if match is not None:
        matches.setdefault(doc, []).append((item, match))
    for doc, found in matches.items():
      for item, match in _without_nested_answers(found):
        results[doc].append(self._to_hit(match, item, texts[doc], datas[doc],
                                         tokens, byte_starts[doc]))
      results[doc].sort(key=lambda h: h.span)
    return results

  def _candidates(self, hashes: np.ndarray, doc_of: np.ndarray):
    """All (doc position, key, key offset) from the lookup tables."""
    parts = []
    stride = self.params.sample_stride
    for table in self._tables:
      grams = hashing.ngram_hashes(hashes, table.size)
      positions = np.arange(grams.size)
      # Short-key tables are few entries; sample only the main n-grams.
      if stride > 1 and table.size == self.params.ngram:
        grams, positions = grams[::stride], positions[::stride]
      # An n-gram that straddles two documents is not text of either.
      inside = doc_of[positions] == doc_of[positions + table.size - 1]
      parts.append(table.lookup(grams[inside], positions[inside]))
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))

  def _match_key(self, doc, lo, hi, key: _Key, starts, runs=True):
    """Finds a key around its aligned starts.

    Returns:
      (start, end, score, how), or None. `how` is "exact"; "edited" (short
      key with one token changed); for long keys "overlap" (covered weight
      >= threshold), "partial" (below that, but a verbatim run of at least
      `partial_len` weighted tokens and `min_info` weight) or "assisted"
      (covered weight >= assisted_threshold only).
    """
    p = self.params
    n = key.tokens.size
    if n <= p.short_len:
      match = _exact(doc, lo, hi, key.tokens, starts)
      if match is not None:
        return match + (1.0, "exact")
      if n < p.edit_min_tokens:
        return None
      edit = _one_edit(doc, lo, hi, key.tokens, starts)
      if edit is None:
        return None
      start, end, changed, replacement = edit
      # As for long questions, the matched part must carry `threshold` of
      # the weight: a changed "seventh" or "oligopoly" makes another
      # question. No number may change either (Z_7 vs Z_11).
      score = 1.0 - float(key.weights[changed]) / max(key.info, 1e-9)
      numbers = normalize.is_number(np.array(
          [key.tokens[changed]] + ([doc[replacement]] if replacement >= 0
                                   else []), dtype=np.uint64))
      if score < p.threshold or numbers.any():
        return None
      return start, end, score, "edited"
    score, match = _overlap(doc, lo, hi, key, starts, p)
    if score >= p.threshold:
      return match + (score, "overlap")
    run = _longest_run(doc, lo, hi, key, starts) if runs else None
    if run is not None and run[2] >= p.partial_len and run[3] >= p.min_info:
      # Cut the whole matched text when there is more than the run.
      span = match if score >= p.assisted_threshold else run[:2]
      return span + (score, "partial")
    if score >= p.assisted_threshold:
      return match + (score, "assisted")
    return None

  def _verify(self, doc, lo, hi, item, starts):
    """Scores one (document, item) occurrence of a question key."""
    p, index = self.params, self.index
    answer = index.answer.row(item)
    passage = index.passage.row(item)
    if index.key_is_answer[item]:
      return self._verify_by_answer(doc, lo, hi, index.question.row(item),
                                    answer, starts)
    key = _Key(index.question.row(item), index.weights.row(item),
               float(index.info[item]))
    found = self._match_key(doc, lo, hi, key, starts)
    if found is None:
      return None
    start, end, score, how = found
    a_score, a_end = self._answer_score(doc, end, hi, answer)
    p_score = self._passage_score(doc, (start, end), lo, hi, passage)
    # A passage item's answer is often just "yes"/"no": only the passage counts.
    supported = (p_score >= p.passage_threshold if passage.size
                 else a_score >= p.answer_threshold)
    # Alone, a question counts when it is telling: verbatim and informative,
    # mostly covered, or a long verbatim run of it; a passage item never.
    alone = not passage.size and {
        "exact": key.info >= p.min_info, "edited": False, "overlap": True,
        "partial": True, "assisted": False}[how]
    if not (alone or supported):
      return None
    rule = {"exact": "exact", "partial": "partial"}.get(how, "overlap")
    if how == "partial" and supported and score >= p.assisted_threshold:
      rule = "overlap"
    end = max(end, a_end) if a_score >= p.answer_threshold else end
    return start, end, score, rule, a_score, p_score

  def _verify_answer(self, doc, lo, hi, item, starts):
    """Scores one (document, item) occurrence of an answer key alone."""
    index, p = self.index, self.params
    key = _Key(index.answer.row(item), index.answer_weights.row(item),
               float(index.answer_info[item]))
    # An answer alone must be as telling as a question alone, and mostly
    # there: parts of solutions (a list of primes, a loop) are common text.
    found = self._match_key(doc, lo, hi, key, starts, runs=False)
    if found is None or found[3] in ("edited", "assisted") or (
        found[3] == "exact" and key.info < p.min_info):
      return None
    start, end, score, _ = found
    return start, end, score, "answer", score, -1.0

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
    w_hi = min(hi, q_end + p.answer_window + 5 * answer.size)
    window = doc[q_end:w_hi]
    k = min(p.overlap_ngram, answer.size)
    grams = hashing.ngram_hashes(window, k)
    found = np.isin(grams, hashing.ngram_hashes(answer, k))
    if not found.any():
      return 0.0, q_end
    covered = _covered(hashing.ngram_hashes(answer, k), grams, answer.size, k)
    return float(covered.mean()), q_end + int(np.flatnonzero(found)[-1]) + k

  def _passage_score(self, doc, match, lo, hi, passage):
    """Fraction of the passage's n-grams around the question (or -1)."""
    if passage.size == 0:
      return -1.0
    reach = passage.size + self.params.answer_window
    window = doc[max(lo, match[0] - reach):min(hi, match[1] + reach)]
    grams = hashing.ngram_hashes(window, self.params.passage_ngram)
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


def _exact(doc, lo, hi, key, starts):
  """(start, end) of the key verbatim at one of its aligned starts, or None."""
  n = key.size
  for a in np.unique(starts):
    if lo <= a and a + n <= hi and np.array_equal(doc[a:a + n], key):
      return int(a), int(a + n)
  return None


def _one_edit(doc, lo, hi, key, starts):
  """The key with exactly one token replaced or deleted.

  Insertions are not accepted: an inserted word ("not") can turn the
  question around, and the index cannot weigh a word it does not hold.
  Hits before the edit align the key at its start, hits after a deletion one
  token earlier; both alignments are tried.

  Returns:
    (start, end, index of the changed key token, document position of the
    replacing token or -1), or None.
  """
  n = key.size
  for a in np.unique(starts).tolist():
    for d in (0, -1):  # Document text is n + d tokens long.
      for s in {a, a - d}:
        e = s + n + d
        if s < lo or e > hi:
          continue
        seg = doc[s:e]
        m = n + d
        bad = np.flatnonzero(seg[:m] != key[:m])
        prefix = int(bad[0]) if bad.size else m
        bad = np.flatnonzero(seg[::-1] != key[::-1][:m])
        suffix = int(bad[0]) if bad.size else m
        if prefix < n and prefix + suffix >= n - 1:
          return s, e, prefix, (s + prefix if d == 0 else -1)
  return None


def _overlap(doc, lo, hi, key: _Key, starts, p):
  """Covered weight fraction of a long key near its starts, and the span."""
  n, k = key.tokens.size, p.overlap_ngram
  slack = max(8, n // 4)
  w_lo = max(lo, int(starts.min()) - slack)
  w_hi = min(hi, int(starts.max()) + n + slack)
  window_grams = hashing.ngram_hashes(doc[w_lo:w_hi], k)
  key_grams = hashing.ngram_hashes(key.tokens, k)
  covered = _covered(key_grams, window_grams, n, k)
  score = float((key.weights * covered).sum() / max(key.info, 1e-9))
  if score < p.assisted_threshold:
    return score, (w_lo, w_lo)
  where = np.flatnonzero(np.isin(window_grams, key_grams))
  # Not past where the key ends: its phrases recur in worked answers, and
  # the answer is looked for after the end. Hits far from the median
  # alignment are such repeats; nearer ones are shifted by insertions.
  middle = np.median(starts)
  end = int(starts[starts <= middle + slack].max()) + n
  match = (w_lo + int(where[0]), min(w_lo + int(where[-1]) + k, end))
  # Repetitive questions ("sqrt 3 + sqrt 5 + ...") are covered by a few
  # k-grams; the document must also hold comparably much text.
  if match[1] - match[0] < p.min_span_ratio * n:
    return 0.0, (w_lo, w_lo)
  return score, match


def _longest_run(doc, lo, hi, key: _Key, starts):
  """The verbatim run of key tokens with the most weight, at some start.

  Returns:
    (doc start, doc end, weighted tokens in the run, run weight), or None.
  """
  best = None
  n = key.tokens.size
  for a in np.unique(starts).tolist():
    k0, k1 = max(0, lo - a), min(n, hi - a)
    if k1 - k0 <= 0:
      continue
    same = doc[a + k0:a + k1] == key.tokens[k0:k1]
    # Prefix sums of weight and weighted tokens, restarted after a mismatch.
    w = np.where(same, key.weights[k0:k1], 0.0)
    total = np.cumsum(w)
    at_break = np.maximum.accumulate(np.where(same, 0.0, total))
    run_w = total - at_break
    end = int(np.argmax(run_w))
    if run_w[end] <= 0 or (best is not None and run_w[end] <= best[3]):
      continue
    breaks = np.flatnonzero(~same[:end + 1])
    start = int(breaks[-1]) + 1 if breaks.size else 0
    weighted = int(np.count_nonzero(key.weights[k0 + start:k0 + end + 1]))
    best = (a + k0 + start, a + k0 + end + 1, weighted, float(run_w[end]))
  return best


def _without_nested_answers(found):
  """Drops answer-key matches inside a question match of the same item."""
  spans = {}
  for item, m in found:
    if m[3] != "answer":
      spans.setdefault(item, []).append((m[0], m[1]))
  return [(item, m) for item, m in found if m[3] != "answer" or not any(
      s <= m[0] and m[1] <= e for s, e in spans.get(item, ()))]


def _groups(docs, items, aligned, qlens):
  """Splits sorted candidates into (doc, item, aligned starts) occurrences."""
  n = docs.size
  new = np.ones(n, dtype=bool)
  new[1:] = ((docs[1:] != docs[:-1]) | (items[1:] != items[:-1]) |
             (aligned[1:] - aligned[:-1] > qlens[1:]))
  bounds = np.append(np.flatnonzero(new), n)
  for s, e in zip(bounds[:-1], bounds[1:]):
    yield int(docs[s]), int(items[s]), aligned[s:e]
