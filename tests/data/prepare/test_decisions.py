"""The saved first-pass decisions: what a resumed preparation reuses, and what it refuses."""
import json

from midtrain_jax.data.prepare import decisions


def _decided() -> decisions.Decisions:
  return decisions.Decisions(
      fingerprint="f1", records_read=10, malformed={}, dedup={}, heldout_candidates=2,
      heldout=[(0, 0, 7)], removed=[(0, 0, 3), (0, 1, 0)], train_docs=7)


def test_saved_decisions_load_back_equal(tmp_path):
  decisions.save(tmp_path, _decided())
  assert decisions.load(tmp_path, "f1") == _decided()


def test_decisions_of_other_settings_or_another_version_are_decided_again(tmp_path):
  decisions.save(tmp_path, _decided())
  assert decisions.load(tmp_path, "f2") is None
  state = json.loads((tmp_path / decisions.DECISIONS).read_text())
  # A version that saved every train key instead of the removed ones.
  state["train"] = [[0, 0, i] for i in range(7)]
  del state["removed"], state["train_docs"]
  (tmp_path / decisions.DECISIONS).write_text(json.dumps(state))
  assert decisions.load(tmp_path, "f1") is None
