"""`Resolve` on Beam gives `resolve`'s verdicts, on one worker and on two processes."""
import pathlib
import random

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing import util as beam_testing

import midtrain_jax
from midtrain_jax.dedup import beam_components, components, deduplicator, params
from tests.dedup import planted
from tests.dedup.test_components import _hot_docs

_EMBEDDER = "tests.dedup.planted:bag_embedder"
_PACKAGE_ROOT = str(pathlib.Path(midtrain_jax.__file__).resolve().parents[1])


def _options(workers, monkeypatch):
  if workers == 1:
    return PipelineOptions(["--runner=FnApiRunner", "--direct_num_workers=1"])
  # Worker processes must import the package this test imported.
  monkeypatch.setenv("PYTHONPATH", _PACKAGE_ROOT)
  return PipelineOptions(["--runner=FnApiRunner", f"--direct_num_workers={workers}",
                          "--direct_running_mode=multi_processing"])


def _planted_items(settings):
  """Two tasks of prose (near, exact and semantic copies, within and across tasks), Python
  functions with renamed copies, and an exact-only task; then the reference set."""
  rng = random.Random(5)
  prose = list(planted.prose_documents()[:60])
  vocabulary = " ".join(prose).split()
  code = list(planted.functions()[:20])
  docs = [((0, i), f"web{i}", "web", t) for i, t in enumerate(prose[:40])]
  docs += [((1, i), f"wiki{i}", "wiki", t) for i, t in enumerate(prose[40:])]
  docs += [((0, 100 + i), f"web-near{i}", "web", planted.edit_words(prose[i], rng, 0.07,
                                                                    vocabulary))
           for i in range(0, 40, 4)]
  docs += [((0, 300 + i), f"web-many{i}", "web", planted.edit_words(prose[10], rng, 0.03,
                                                                     vocabulary))
           for i in range(7)]  # A bucket beyond the cap.
  docs += [((1, 100 + i), f"wiki-copy{i}", "wiki", prose[i].upper()) for i in range(0, 40, 5)]
  docs += [((1, 200 + i), f"wiki-shuffled{i}", "wiki", planted.shuffle_words(prose[i], rng))
           for i in range(1, 40, 6)]
  docs += [((2, i), f"code{i}", "code", f) for i, f in enumerate(code)]
  docs += [((2, 100 + i), f"code-renamed{i}", "code", planted.rename_function(code[i], rng))
           for i in range(0, 20, 3)]
  docs += [((3, i), f"tpl{i}", "templated", t + " Share this.") for i, t in enumerate(prose[:4])]
  docs += [((3, 10), "tpl-copy", "templated", prose[41])]
  dedup = deduplicator.Deduplicator(settings)
  items = [components.Item(key, doc_id, task,
                           dedup.fingerprint([text], exact_only=task == "templated")[0])
           for key, doc_id, task, text in docs]
  reference = list(zip([f"base{i}" for i in range(4)],
                       dedup.fingerprint([prose[45], prose[46] + " Read more.", prose[3],
                                          prose[50].lower()])))
  return items, reference


_SETTINGS = {
    "levels": ("exact", "near", "code", "semantic"),
    "embedder": _EMBEDDER, "semantic_threshold": 0.9, "max_bucket": 4}


# Each worker count runs cross_task on and off, both reference modes and both near methods.
_CASES = {1: (("drop", "minhash", True), ("count", "both", False)),
          2: (("count", "minhash", True), ("drop", "both", False))}


@pytest.mark.parametrize("workers", [1, 2])
def test_resolve_on_beam_equals_resolve(workers, monkeypatch):
  cases = {}
  for mode, near_method, cross_task in _CASES[workers]:
    settings = params.DedupParams(reference_mode=mode, near_method=near_method, **_SETTINGS)
    items, reference = _planted_items(settings)
    expected = components.resolve(items, settings, reference, cross_task)
    cases[(mode, near_method, cross_task)] = (settings, items, reference, expected)
  settings = params.DedupParams(reference_mode="count", **_SETTINGS)
  items, reference = _planted_items(settings)
  # The corpus exercises every level, the reference set and the cap.
  found = components.resolve(items, settings, reference).values()
  levels = {v.match.level for v in found if v.match and not v.match.reference}
  assert levels == {"exact", "near", "code", "semantic"}
  assert any(v.match and v.match.reference for v in found) and any(v.skipped for v in found)
  assert any(v.match and v.match.task != v.task for v in found if not v.kept)
  with beam.Pipeline(options=_options(workers, monkeypatch)) as pipeline:
    for (mode, near_method, cross_task), (settings, items, reference, expected) in cases.items():
      name = f"{mode} {near_method} {cross_task}"
      refs = pipeline | f"{name} reference" >> beam.Create(reference)
      # Planted duplicates make stars: 2 rounds converge (else the check fails the run).
      resolve = beam_components.Resolve(settings, cross_task, refs, rounds=2)
      verdicts = pipeline | f"{name} items" >> beam.Create(items) | f"{name} resolve" >> resolve
      beam_testing.assert_that(verdicts, beam_testing.equal_to(list(expected.items())),
                               label=f"{name} equal")


def test_hot_buckets_on_beam_count_what_the_cap_skipped():
  settings = params.DedupParams(max_bucket=8)
  dedup = deduplicator.Deduplicator(settings)
  items = [components.Item(key, doc_id, task, dedup.fingerprint([text])[0])
           for key, doc_id, task, text in _hot_docs(60)]
  expected = components.resolve(items, settings)
  assert sum(v.skipped for v in expected.values()) > 0
  assert sum(v.capped for v in expected.values()) > 0
  with beam.Pipeline(options=_options(1, None)) as pipeline:
    verdicts = pipeline | beam.Create(items) | beam_components.Resolve(settings)
    beam_testing.assert_that(verdicts, beam_testing.equal_to(list(expected.items())))


def _path_items(n=80, seed=0):
  """n documents, each a near copy of the next (Jaccard 0.67) and of some after it (0.43 at
  two steps: estimated around the threshold), keys in shuffled order: a long thin graph."""
  settings = params.DedupParams()
  texts = [" ".join(f"w{j}" for j in range(40 * i, 40 * i + 200)) for i in range(n)]
  keys = list(range(n))
  random.Random(seed).shuffle(keys)
  fps = deduplicator.Deduplicator(settings).fingerprint(texts)
  return [components.Item((k,), f"d{i}", "t", fp) for i, (k, fp) in enumerate(zip(keys, fps))]


def _resolve_on_beam(items, settings, rounds=None):
  with beam.Pipeline(options=_options(1, None)) as pipeline:
    verdicts = (pipeline | beam.Create(items)
                | beam_components.Resolve(settings, rounds=rounds))
    expected = components.resolve(items, settings)
    beam_testing.assert_that(verdicts, beam_testing.equal_to(list(expected.items())))
  return expected


def test_a_long_path_converges_and_too_few_rounds_fail_naming_the_setting():
  items = _path_items()
  settings = params.DedupParams()
  expected = _resolve_on_beam(items, settings)
  kept = [v for v in expected.values() if v.kept]
  assert [v.doc_id for v in kept] == [min(items, key=lambda it: it.key).doc_id]  # One component.
  with pytest.raises(Exception, match=r"did not converge in 1 rounds.*component_rounds"):
    _resolve_on_beam(items, settings, rounds=1)
