"""Chat documents' loss masks through best-fit packing and the held-out batches.

Every token id below occurs once in the whole stream, so each packed position
names its document and place: its `loss_mask` must be that document's own
stored mask at the target's place, however documents were split and packed.
"""
import grain
import numpy as np

from midtrain_jax.data.load import heldout_batches, packing

SEQ = 32


def _documents(seed: int = 0) -> list[dict]:
  """Chat documents (some longer than a row, one all prompt) and text documents."""
  rng = np.random.default_rng(seed)
  docs, start = [], 1
  for i in range(40):
    n = int(rng.integers(3, 3 * SEQ))
    tokens = np.arange(start, start + n, dtype=np.int32)
    start += n
    if i % 5 == 4:
      docs.append({"tokens": tokens, "task_id": 1})  # Text: every target scored.
      continue
    mask = (rng.random(n) < 0.5).astype(np.int32)
    if i == 7:
      mask[:] = 0  # All prompt: nothing scored.
    docs.append({"tokens": tokens, "loss_mask": mask, "task_id": 0})
  return docs


def _owner(docs: list[dict]) -> dict[int, tuple[int, int]]:
  return {int(t): (d, i) for d, doc in enumerate(docs) for i, t in enumerate(doc["tokens"])}


def _wanted(docs, owner, token: int) -> int:
  """The mask of the target after input `token`: its document's mask one place on."""
  d, i = owner[token]
  return int(docs[d]["loss_mask"][i + 1]) if "loss_mask" in docs[d] else 1


def test_packed_rows_carry_each_documents_own_mask():
  docs = _documents()
  owner = _owner(docs)
  ds = packing.BestFitPackIterDataset(grain.MapDataset.source(docs).to_iter_dataset(),
                                      seq_len=SEQ, window_rows=4, pad_id=0, seed=0)
  seen, rows = 0, list(ds)
  for row in rows:
    real = row["segment_ids"] > 0
    assert not row["loss_mask"][~real].any()  # Padding is never scored.
    for pos in np.flatnonzero(real):
      assert row["loss_mask"][pos] == _wanted(docs, owner, int(row["inputs"][pos])), pos
      seen += 1
    # Rows hold several documents: their masks stay apart, segment by segment.
  assert max(row["segment_ids"].max() for row in rows) > 1
  assert seen == sum(len(d["tokens"]) - 1 for d in docs)  # Every pair once.
  scored = sum(int(r["loss_mask"].sum()) for r in rows)
  assert scored == sum(int(d["loss_mask"][1:].sum()) if "loss_mask" in d
                       else len(d["tokens"]) - 1 for d in docs)


def test_held_out_batches_score_only_the_responses_and_count_their_bytes():
  docs = [d for d in _documents(1) if "loss_mask" in d]
  owner = _owner(docs)
  tokens = [d["tokens"] for d in docs]
  masks = [d["loss_mask"] for d in docs]
  response_bytes = [int(m.sum()) * 3 for m in masks]
  batches = heldout_batches.EvalBatches(tokens, response_bytes, np.arange(len(docs)),
                                        seq_len=SEQ, batch_size=4, pad_id=0, task_id=0,
                                        stride=SEQ // 2, masks=masks)
  assert batches.num_tokens == sum(int(m[1:].sum()) for m in masks)
  assert batches.num_bytes == sum(response_bytes)
  scored = 0
  for batch in batches:
    for row in range(4):
      for pos in np.flatnonzero(batch["loss_mask"][row]):
        assert _wanted(docs, owner, int(batch["inputs"][row, pos])) == 1
        scored += 1
  assert scored == batches.num_tokens  # Each response target once, windows overlapping.
