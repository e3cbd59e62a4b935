"""Hash buckets with a size cap: the candidate lists of the LSH, SimHash and semantic indices.

Boilerplate makes hot buckets: documents that share a licence header, a
template or a signature share the band keys computed from it, so one bucket
collects a large fraction of the corpus, and every later document that lands
there is compared with all of it (quadratic). A bucket here stores at most
`cap` positions, the earliest inserted (the copies the keep rule keeps, so a
later copy still points at the first one). Positions past the cap are not
stored under that key (they stay under their other keys) and are counted:

  capped     insertions not stored because their bucket was full;
  skipped    comparisons queries did not make: a lookup of a full bucket
             skips one comparison per position it turned away;
  largest    the most positions any one key was given (stored or not).

Everything depends only on the order of insertions and lookups. The
deduplication itself caps buckets by key instead (components.py: a bucket's
members compared with its first `max_bucket` by key, whatever order they come
in); these buckets serve the indices' own lookups.
"""


class Buckets:
  """Positions by hash key, at most `cap` per key (0: unbounded).

  Args:
    cap: the most positions one key stores; 0 stores all.
  """

  def __init__(self, cap: int = 0):
    if cap < 0:
      raise ValueError(f"Bucket cap {cap} must be >= 0 (0: unbounded).")
    self.cap = cap
    self._stored: dict[int, list[int]] = {}
    self._turned_away: dict[int, int] = {}
    self.capped = 0
    self.skipped = 0
    self.largest = 0

  def get(self, key: int) -> list[int]:
    """The positions stored under `key` (insertion order); counts the skipped ones."""
    turned_away = self._turned_away.get(key)
    if turned_away:
      self.skipped += turned_away
    return self._stored.get(key, [])

  def add(self, key: int, position: int) -> None:
    """Stores `position` under `key`, unless the key's bucket is full (then counted)."""
    bucket = self._stored.get(key)
    if bucket is None:
      self._stored[key] = bucket = []
    if self.cap and len(bucket) >= self.cap:
      self._turned_away[key] = self._turned_away.get(key, 0) + 1
      self.capped += 1
      size = len(bucket) + self._turned_away[key]
    else:
      bucket.append(position)
      size = len(bucket) + self._turned_away.get(key, 0)
    self.largest = max(self.largest, size)
