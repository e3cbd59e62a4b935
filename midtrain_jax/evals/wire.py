"""The messages between the sandbox's judge and the generated program's process.

A frame is a 4-byte big-endian length and a JSON document. Values cross as
plain data: None, booleans, integers (large ones as hexadecimal), floats (as
their repr, so inf and nan survive), strings, bytes, complex numbers, lists,
tuples, sets, frozensets, dicts, `collections` containers (Counter,
OrderedDict, defaultdict, deque), ranges, dict views, Decimal, Fraction, and
iterators as their items, each tagged `[tag, body]`. Anything else is handed
to a `ref` callback and crosses as a reference (`["R", [id, type name]]`).
Decoding builds only these types, so data from the program cannot run code in
the judge.

Only the standard library: this runs inside the sandbox (see `judge.py`).
"""
import collections
import collections.abc
import json
import os

MAX_FRAME = 64 << 20
# Integers beyond this cross as hexadecimal: JSON and str() limit decimal digits.
_JSON_INT = 1 << 62
_PLAIN = (type(None), bool, str)
_SEQUENCES = {list: "L", tuple: "T", set: "S", frozenset: "FS"}
_FACTORIES = {f.__name__: f for f in (int, float, str, bytes, list, dict, set, tuple, bool)}
# Subclasses of builtin values (namedtuple, IntEnum, str subclasses) cross as their value.
_BASES = ((int, int.__int__), (float, float.__float__), (str, str.__str__),
          (bytes, bytes), (tuple, tuple), (list, list), (dict, dict), (set, set),
          (frozenset, frozenset))


class WireError(Exception):
  """A malformed, unknown or oversized message."""


def write_frame(fd: int, message) -> None:
  """Writes one JSON message to `fd`."""
  data = json.dumps(message, separators=(",", ":"), allow_nan=False).encode()
  if len(data) > MAX_FRAME:
    raise WireError(f"a message of {len(data)} bytes (at most {MAX_FRAME})")
  view = memoryview(len(data).to_bytes(4, "big") + data)
  while view:
    view = view[os.write(fd, view):]


def _read_exact(fd: int, size: int) -> bytes:
  chunks = []
  while size:
    chunk = os.read(fd, min(size, 1 << 20))
    if not chunk:
      raise EOFError("the other end closed the channel")
    chunks.append(chunk)
    size -= len(chunk)
  return b"".join(chunks)


def read_frame(fd: int):
  """Reads one JSON message from `fd` (EOFError when the writer is gone)."""
  size = int.from_bytes(_read_exact(fd, 4), "big")
  if size > MAX_FRAME:
    raise WireError(f"a message of {size} bytes (at most {MAX_FRAME})")
  return json.loads(_read_exact(fd, size))


def _pairs(items, ref) -> list:
  return [[encode(k, ref), encode(v, ref)] for k, v in items]


def _encode_known(value, kind, ref):
  """Encodes values of the builtin and collections types; None for any other type."""
  name = f"{kind.__module__}.{kind.__qualname__}"
  if kind is collections.Counter:
    return ["C", _pairs(value.items(), ref)]
  if kind is collections.OrderedDict:
    return ["OD", _pairs(value.items(), ref)]
  if kind is collections.defaultdict:
    factory = getattr(value.default_factory, "__name__", None)
    return ["DD", [factory if factory in _FACTORIES else None, _pairs(value.items(), ref)]]
  if kind is collections.deque:
    return ["DQ", [[encode(v, ref) for v in value], value.maxlen]]
  if kind is range:
    return ["rg", [value.start, value.stop, value.step]]
  if kind is complex:
    return ["c", [repr(value.real), repr(value.imag)]]
  if kind in (bytes, bytearray):
    return ["b" if kind is bytes else "ba", value.hex()]
  if name in ("builtins.dict_keys", "builtins.dict_values"):
    return ["K" if name.endswith("keys") else "V", [encode(v, ref) for v in value]]
  if name == "builtins.dict_items":
    return ["IV", _pairs(value, ref)]
  if name == "decimal.Decimal":
    return ["Dec", str(value)]
  if name == "fractions.Fraction":
    return ["Fr", [encode(value.numerator, ref), encode(value.denominator, ref)]]
  return None


def encode(value, ref, *, consume: bool = True):
  """A value as JSON: plain data as itself, anything else as `ref(value)`.

  Args:
    value: what to send.
    ref: called with a value that cannot cross as data; returns its encoding.
    consume: send iterators as their items (False: as references).
  """
  kind = type(value)
  if kind in _PLAIN:
    return value
  if kind is int:
    return value if -_JSON_INT < value < _JSON_INT else ["i", hex(value)]
  if kind is float:
    return ["f", repr(value)]
  if kind in _SEQUENCES:
    return [_SEQUENCES[kind], [encode(v, ref) for v in value]]
  if kind is dict:
    return ["D", _pairs(value.items(), ref)]
  known = _encode_known(value, kind, ref)
  if known is not None:
    return known
  if consume and isinstance(value, collections.abc.Iterator):
    return ["I", [encode(v, ref) for v in value]]
  for base, plain in _BASES:
    if isinstance(value, base):
      return encode(plain(value), ref)
  return ref(value)


def text(data) -> str:
  """`data` if it is a string (raises WireError otherwise)."""
  if type(data) is not str:
    raise WireError(f"expected text, got {type(data).__name__}")
  return data


def _items(data) -> list:
  if type(data) is not list:
    raise WireError(f"expected a list, got {type(data).__name__}")
  return data


def _whole(data) -> int:
  if type(data) is not int:
    raise WireError(f"expected an integer, got {type(data).__name__}")
  return data


def _decimal(data):
  import decimal  # noqa: PLC0415 (rarely needed: not loaded at start-up)
  return decimal.Decimal(text(data))


def _fraction(body, d):
  import fractions  # noqa: PLC0415
  return fractions.Fraction(d(body[0]), d(body[1]))


_DECODERS = {
    "i": lambda b, d, r: int(text(b), 16),
    "f": lambda b, d, r: float(text(b)),
    "c": lambda b, d, r: complex(float(text(b[0])), float(text(b[1]))),
    "b": lambda b, d, r: bytes.fromhex(text(b)),
    "ba": lambda b, d, r: bytearray.fromhex(text(b)),
    "L": lambda b, d, r: [d(v) for v in _items(b)],
    "T": lambda b, d, r: tuple(d(v) for v in _items(b)),
    "S": lambda b, d, r: {d(v) for v in _items(b)},
    "FS": lambda b, d, r: frozenset(d(v) for v in _items(b)),
    "D": lambda b, d, r: {d(k): d(v) for k, v in _items(b)},
    "C": lambda b, d, r: collections.Counter({d(k): d(v) for k, v in _items(b)}),
    "OD": lambda b, d, r: collections.OrderedDict((d(k), d(v)) for k, v in _items(b)),
    "DD": lambda b, d, r: collections.defaultdict(
        _FACTORIES.get(b[0]), ((d(k), d(v)) for k, v in _items(b[1]))),
    "DQ": lambda b, d, r: collections.deque(
        (d(v) for v in _items(b[0])), None if b[1] is None else _whole(b[1])),
    "rg": lambda b, d, r: range(*(_whole(v) for v in _items(b))),
    "K": lambda b, d, r: dict.fromkeys(d(v) for v in _items(b)).keys(),
    "V": lambda b, d, r: dict(enumerate(d(v) for v in _items(b))).values(),
    "IV": lambda b, d, r: {d(k): d(v) for k, v in _items(b)}.items(),
    "I": lambda b, d, r: iter([d(v) for v in _items(b)]),
    "Dec": lambda b, d, r: _decimal(b),
    "Fr": lambda b, d, r: _fraction(b, d),
    "R": lambda b, d, r: r(_whole(b[0]), text(b[1])),
}


def decode(data, remote):
  """The value `encode` sent; `remote(id, type name)` resolves references."""
  if type(data) in (type(None), bool, int, float, str):
    return data
  if type(data) is not list or len(data) != 2 or type(data[0]) is not str:
    raise WireError(f"not an encoded value: {str(data)[:80]}")
  tag, body = data
  if tag not in _DECODERS:
    raise WireError(f"unknown value tag {tag!r}")
  return _DECODERS[tag](body, lambda x: decode(x, remote), remote)
