"""The sandbox's wire format: values cross as themselves, anything else as a reference."""
import collections
import decimal
import fractions
import math
import os

import pytest

from midtrain_jax.evals import wire


def _no_refs(value):
  raise AssertionError(f"{value!r} should have crossed as data")


def _round_trip(value):
  return wire.decode(wire.encode(value, _no_refs), lambda *a: pytest.fail("no refs expected"))


@pytest.mark.parametrize("value", [
    None, True, False, 0, -7, 1 << 62, -(1 << 62), 1 << 20000, 0.1, -0.0, math.inf,
    "", "naïve \x00 \u2603", b"\x00\xff", bytearray(b"ab"), 1 + 2j, [1, [2, "3"]], (1, (2,)),
    {1, "a"}, frozenset({(1, 2)}), {"a": [1], 2: (3,), (4, 5): None},
    collections.Counter("abracadabra"), collections.OrderedDict([("b", 1), ("a", 2)]),
    collections.deque([1, 2], maxlen=5), range(2, 10, 3), decimal.Decimal("1.10"),
    fractions.Fraction(3, 7)], ids=lambda v: type(v).__name__)
def test_plain_values_cross_exactly(value):
  back = _round_trip(value)
  assert type(back) is type(value) and back == value
  if isinstance(value, float):
    assert math.copysign(1, back) == math.copysign(1, value)


def test_values_that_compare_specially():
  assert math.isnan(_round_trip(math.nan))
  dd = _round_trip(collections.defaultdict(list, {"a": [1]}))
  assert dd == {"a": [1]} and dd.default_factory is list and dd["new"] == []
  assert _round_trip({"a": 1, "b": 2}.keys()) == {"a", "b"}
  assert list(_round_trip(iter([1, 2]))) == [1, 2]
  assert list(_round_trip(x * x for x in range(3))) == [0, 1, 4]
  assert sorted(_round_trip({"a": 1}.items())) == [("a", 1)]


def test_subclasses_cross_as_their_plain_value():
  point = collections.namedtuple("Point", "x y")(1, 2)

  class Loud(str):
    def __eq__(self, other):
      return True
    __hash__ = str.__hash__

  assert type(_round_trip(point)) is tuple and _round_trip(point) == (1, 2)
  back = _round_trip(Loud("x"))
  assert type(back) is str and back != "y"


def test_other_objects_cross_as_references():
  class Node:
    pass

  node, seen = Node(), []
  encoded = wire.encode([1, node], lambda v: seen.append(v) or ["R", [7, type(v).__name__]])
  assert seen == [node]
  decoded = wire.decode(encoded, lambda rid, kind: (rid, kind))
  assert decoded == [1, (7, "Node")]


@pytest.mark.parametrize("data", [
    ["R"], ["x", 1], ["L", "not a list"], ["f", 1.5], [1, 2], {"a": 1}, ["i", "zz"],
    ["DQ", [[1], "3"]], ["rg", ["1", 2]], ["S", [["L", []]]]])
def test_malformed_data_is_refused(data):
  with pytest.raises((wire.WireError, ValueError, TypeError)):
    wire.decode(data, lambda *a: None)


def test_frames_round_trip_and_refuse_oversized_ones(monkeypatch):
  r, w = os.pipe()
  try:
    wire.write_frame(w, ["ok", {"a": [1, 2]}])
    assert wire.read_frame(r) == ["ok", {"a": [1, 2]}]
    os.write(w, (wire.MAX_FRAME + 1).to_bytes(4, "big"))
    with pytest.raises(wire.WireError, match="at most"):
      wire.read_frame(r)
    os.close(w)
    with pytest.raises(EOFError):
      wire.read_frame(r)
  finally:
    os.close(r)
