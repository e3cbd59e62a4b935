"""Progress lines of a long local preparation: documents, tokens, MB/s and ETA per task."""
import time
from collections.abc import Callable


def _duration(seconds: float) -> str:
  seconds = int(seconds)
  if seconds >= 3600:
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
  return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Meter:
  """Prints a task's progress at most every `every` seconds.

  Args:
    task: the task's name (and stage).
    total: records it has to process (the ETA's denominator); None when
      unknown (the first pass reads until the sources end): no ETA.
    log: the printer.
    every: seconds between lines.
    clock: the time source (tests pass their own).
  """

  def __init__(self, task: str, total: int | None, log: Callable[[str], None], every: float = 10.0,
               clock: Callable[[], float] = time.monotonic):
    self.task, self.total, self.log, self.every, self.clock = task, total, log, every, clock
    self.started = self.last = clock()
    self.records = self.docs = self.tokens = self.bytes = 0

  def update(self, records: int, docs: int, tokens: int, nbytes: int) -> None:
    """Adds what was just processed; prints a line when one is due."""
    self.records += records
    self.docs += docs
    self.tokens += tokens
    self.bytes += nbytes
    now = self.clock()
    if now - self.last >= self.every:
      self.last = now
      self.log(self.line())

  def line(self) -> str:
    """`task: records, docs, tokens, MB/s, ETA` of the work so far."""
    elapsed = max(self.clock() - self.started, 1e-9)
    speed = f"{self.bytes / elapsed / 1e6:.2f} MB/s"
    if self.total is None:
      return f"[prepare] {self.task}: {self.records:,} records, {self.docs:,} docs, {speed}"
    rate = self.records / elapsed
    left = max(self.total - self.records, 0)
    eta = _duration(left / rate) if rate > 0 else "?"
    return (f"[prepare] {self.task}: {self.records:,}/{self.total:,} records, "
            f"{self.docs:,} docs, {self.tokens:,} tokens, {speed}, ETA {eta}")
