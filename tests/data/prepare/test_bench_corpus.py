"""The throughput benchmark's corpus: seeded, sized, copies planted at the counts it records."""
import collections
import json

from benchmarks import prepare_corpus


def _texts(folder) -> list[str]:
  return [json.loads(line)["text"] for path in sorted(folder.glob("part-*.jsonl"))
          for line in path.read_text(encoding="utf-8").splitlines()]


def test_corpus_is_seeded_sized_and_plants_the_copies_it_counts(tmp_path):
  meta = prepare_corpus.build(tmp_path / "a", 0.0005, seed=3)
  again = prepare_corpus.build(tmp_path / "b", 0.0005, seed=3)
  other = prepare_corpus.build(tmp_path / "c", 0.0005, seed=4)
  texts = _texts(tmp_path / "a")
  assert texts == _texts(tmp_path / "b") and meta == again and texts != _texts(tmp_path / "c")
  assert meta["files"] == 1 and len(texts) == meta["docs"] and other["seed"] == 4
  assert 500_000 <= meta["bytes"] < 500_000 + max(map(len, texts)) * 4
  # Every exact copy repeats an earlier document; near copies and variants are new
  # texts except where a short copy drew no edit.
  repeats = sum(n - 1 for n in collections.Counter(texts).values())
  assert meta["exact_copies"] <= repeats <= meta["exact_copies"] + meta["near_copies"]
  assert meta["exact_copies"] > 0 and meta["near_copies"] > 0
