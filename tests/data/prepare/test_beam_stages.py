"""Element functions of the Beam preparation that hold state: bounded and order-free."""
import random

from midtrain_jax.data.prepare import beam_stages, records
from midtrain_jax.documents import readers as sources


def _bad_records(n: int) -> list[tuple]:
  reasons = ["bad JSON (Expecting value: line 1 column {})", "no text field",
             "text is not a string (got int)", "undecodable bytes (at {})"]
  return [((task_file % 3, task_file, position), f"web-{task_file}.jsonl:{position + 1}",
           reasons[(task_file * 7 + position) % 4].format(position))
          for task_file in range(5) for position in range(n // 5)]


def test_the_malformed_tally_combines_in_any_order_to_the_sequential_tally():
  bad = _bad_records(600)
  want = records.MalformedTally()
  for _, where, reason in sorted(bad):
    want.add(sources.Malformed(where, reason))
  combine = beam_stages.MalformedTally()
  random.Random(0).shuffle(bad)
  parts = []
  for chunk in (bad[:50], bad[50:400], bad[400:]):
    acc = combine.create_accumulator()
    for record in chunk:
      acc = combine.add_input(acc, record)
      assert len(acc[2]) <= 2 * records.MALFORMED_EXAMPLES  # Never the task's records.
    parts.append(acc)
  got = combine.extract_output(combine.merge_accumulators(parts))
  assert got == want.as_dict()
  assert got["malformed"] == 600 and len(got["malformed_examples"]) == records.MALFORMED_EXAMPLES
  assert sum(got["malformed_by_reason"].values()) == 600 and len(got["malformed_by_reason"]) == 4
