"""The reference corpus of ordinary code: token rarity, information, cache keys."""
import math
import os

import numpy as np
import pytest

from midtrain_jax.decontam import background, decontaminator, normalize, params


@pytest.fixture
def corpus(tmp_path):
  files = {"a.py": "def add(a, b):\n    return a + b\n",
           "b.py": "def sub(a, b):\n    return a - b\n",
           "c/d.py": "for i in range(3):\n    print(i)\n",
           "e.py": "x = 1  # unique_word\n"}
  for name, text in files.items():
    (tmp_path / name).parent.mkdir(exist_ok=True)
    (tmp_path / name).write_text(text)
  return background.Background(str(tmp_path), tuple(sorted(files)), "four-files"), files


def test_rarity_is_relative_idf_over_files(corpus):
  bg, _ = corpus
  words = ["def", "a", "return", "print", "unique", "zebra"]
  got = background.rarity(bg, normalize.token_hashes(" ".join(words)))
  # Reference: the files holding each word, counted by hand ("unique" is in
  # unique_word, "zebra" in none and weighs like a word of one file: 1).
  df = {"def": 2, "a": 2, "return": 2, "print": 1, "unique": 1, "zebra": 0}
  expected = [math.log(4 / max(df[w], 1)) / math.log(4) for w in words]
  np.testing.assert_allclose(got, expected, rtol=1e-6)
  assert got[0] == pytest.approx(0.5) and got[-1] == pytest.approx(1.0)


def test_information_counts_each_distinct_token_once(corpus):
  bg, _ = corpus
  once = background.information(bg, normalize.token_hashes("print zebra"))
  thrice = background.information(bg, normalize.token_hashes("print zebra zebra print zebra"))
  assert once == pytest.approx(thrice)
  assert once == pytest.approx(math.log(4) / math.log(4) + 1.0)


def test_stdlib_is_the_library_without_installed_packages():
  bg = background.stdlib()
  assert len(bg.paths) > 500 and "os.py" in bg.paths
  assert not any(p.split(os.sep)[0] in ("site-packages", "dist-packages") for p in bg.paths)
  fewer = background.stdlib(exclude={"os.py"})
  assert "os.py" not in fewer.paths and fewer.fingerprint != bg.fingerprint
  # Keywords and common names are ordinary code; a made-up name is not.
  common, rare = background.rarity(bg, normalize.token_hashes("return zqxjvk"))
  assert common < 0.1 and rare == pytest.approx(1.0)


def test_index_cache_key_follows_the_rule_and_the_corpus(monkeypatch, tmp_path):
  names = ("humaneval",)
  path = decontaminator.index_path(names, params.DecontamParams(), str(tmp_path))
  assert path != decontaminator.index_path(
      names, params.DecontamParams(answer_min_info=2.0), str(tmp_path))
  other = background.Background("/nowhere", (), "another-python")
  monkeypatch.setattr(background, "stdlib", lambda exclude=(): other)
  assert path != decontaminator.index_path(names, params.DecontamParams(), str(tmp_path))
  # Without the comparison the corpus does not matter.
  off = params.DecontamParams(answer_min_info=0)
  key = decontaminator.index_path(names, off, str(tmp_path))
  monkeypatch.undo()
  assert key == decontaminator.index_path(names, off, str(tmp_path))
  with pytest.raises(ValueError, match="answer_min_info"):
    params.DecontamParams(answer_min_info=-1)
