"""Settings: each declared once, next to the code that reads it.

A `Setting` holds a key's default, what it does, and what values it allows
(`choices`, a `Check` such as `POSITIVE` or `FRACTION`); its type is the type
of its default. A `Section` groups settings and nested sections, plus the
checks that span several keys. A frozen dataclass can declare its fields as
settings (`field(default, help, ...)`) and `dataclass_settings` reads them back.

Everything else is derived from the declarations:

* `defaults(section)`: the ConfigDict of defaults;
* `validate(section, values, path)`: every key's type, choices and range,
  unknown keys, then the section's own checks, with messages naming
  `<path>.<key>` (e.g. `config.model.remat`);
* `help_lines(section, path)`: one entry per key (type, default, choices, help);
* `overlay(section, values, stored)`: stored values (a run's config.json) laid
  over defaults, dropping keys no longer declared and converting old forms.

This module imports nothing of midtrain_jax: the declaring modules import it.
"""
import dataclasses
import textwrap
from collections.abc import Callable, Mapping
from typing import Any

import ml_collections


@dataclasses.dataclass(frozen=True)
class Check:
  """A condition a value must meet; `text` completes "config.x.y=3 ..." when it fails."""
  text: str
  ok: Callable[[Any], bool]


POSITIVE = Check("must be positive", lambda v: v > 0)
NON_NEGATIVE = Check("must be >= 0", lambda v: v >= 0)
FRACTION = Check("must be in [0, 1]", lambda v: 0.0 <= v <= 1.0)
NON_EMPTY = Check("must be a non-empty tuple", lambda v: len(v) > 0)


def between(low, high, *, low_open: bool = False, high_open: bool = False) -> Check:
  """A range check: `between(0, 1, low_open=True)` is (0, 1]."""
  text = f"must be in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
  return Check(text, lambda v: (low < v if low_open else low <= v) and
               (v < high if high_open else v <= high))


# The kinds of values a setting holds, named as --help_config shows them.
_KINDS = {bool: "bool", int: "int", float: "float", str: "str", tuple: "tuple", dict: "dict"}


@dataclasses.dataclass(frozen=True)
class Setting:
  """One key: its default, what it does, its allowed values.

  Attributes:
    default: the value when nothing sets it; its type is the setting's type
      (a dict default makes an open section of user-chosen keys, copied whole).
    help: what the key does, one or two sentences.
    choices: the allowed values; for a tuple setting, the allowed elements.
    check: a further condition on the value (a range, non-empty).
  """
  default: Any
  help: str
  choices: tuple | None = None
  check: Check | None = None

  @property
  def kind(self) -> type:
    return next(k for k in (bool, int, float, str, tuple, dict) if isinstance(self.default, k))

  def replace(self, **changes) -> "Setting":
    return dataclasses.replace(self, **changes)


# A section check: (the section's values, its path such as "config.model") -> None,
# raising ValueError naming the keys of an impossible combination.
SectionCheck = Callable[[Any, str], None]


@dataclasses.dataclass(frozen=True)
class Section:
  """Settings and nested sections under one name.

  Attributes:
    entries: key -> Setting or Section.
    help: what the section configures.
    checks: conditions spanning several keys, run after every key is valid.
    migrate: turns a stored section of an earlier version (a dict) into
      today's form before it is laid over the defaults.
  """
  entries: Mapping[str, "Setting | Section"]
  help: str = ""
  checks: tuple[SectionCheck, ...] = ()
  migrate: Callable[[dict], dict] | None = None


def field(default, help: str, *, choices: tuple | None = None,  # noqa: A002
          check: Check | None = None):
  """A dataclass field declared as a setting (read back by `dataclass_settings`)."""
  setting = Setting(default, help, choices, check)
  return dataclasses.field(default=default, metadata={"setting": setting})


def dataclass_settings(cls) -> dict[str, Setting]:
  """The settings a dataclass declares with `field`, by field name, in field order."""
  return {f.name: f.metadata["setting"] for f in dataclasses.fields(cls)
          if "setting" in f.metadata}


def key(path: str, name: str) -> str:
  """How messages name a key: `path.name`, or `name` alone at the root."""
  return f"{path}.{name}" if path else name


def defaults(section: Section) -> ml_collections.ConfigDict:
  """A ConfigDict with every key of `section` at its default (unlocked)."""
  c = ml_collections.ConfigDict()
  for name, entry in section.entries.items():
    if isinstance(entry, Section):
      c[name] = defaults(entry)
    elif entry.kind is dict:
      c[name] = ml_collections.ConfigDict(dict(entry.default))
    else:
      c[name] = entry.default
  return c


def walk(section: Section, path: str = ""):
  """Yields (dotted key, Setting) for every setting under `section`, depth first."""
  for name, entry in section.entries.items():
    if isinstance(entry, Section):
      yield from walk(entry, key(path, name))
    else:
      yield key(path, name), entry


def validate(section: Section, values, path: str = "config") -> None:
  """Fails with a ValueError naming the first key of `values` that `section` does not allow.

  Args:
    section: the declaration.
    values: a ConfigDict or mapping with the section's keys.
    path: how messages name the section, e.g. "config.data".
  """
  unknown = sorted(set(values.keys()) - set(section.entries))
  if unknown:
    raise ValueError(f"{key(path, unknown[0])} is not a setting; the keys of "
                     f"{path or 'this section'} are {sorted(section.entries)}.")
  for name, entry in section.entries.items():
    if name not in values:
      raise ValueError(f"{key(path, name)} is missing.")
    if isinstance(entry, Section):
      validate(entry, values[name], key(path, name))
    else:
      check_value(entry, values[name], key(path, name))
  for check in section.checks:
    check(values, path)


def _type_ok(kind: type, value) -> bool:
  if kind is float:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
  if kind is int:
    return isinstance(value, int) and not isinstance(value, bool)
  if kind is tuple:
    return isinstance(value, (tuple, list))
  if kind is dict:
    return isinstance(value, (Mapping, ml_collections.ConfigDict))
  return isinstance(value, kind)


def check_value(setting: Setting, value, name: str) -> None:
  """Fails naming `name` when `value` has the wrong type, is no choice or fails the check."""
  kind = setting.kind
  if not _type_ok(kind, value):
    example = f", e.g. {tuple(setting.choices[:2])!r}" if kind is tuple and setting.choices \
        else ""
    article = "an" if kind is int else "a"
    raise ValueError(f"{name}={value!r} must be {article} {_KINDS[kind]}{example}.")
  if setting.choices is not None:
    if kind is tuple:
      unknown = [v for v in value if v not in setting.choices]
      if unknown:
        raise ValueError(f"{name}={tuple(value)!r} names unknown value(s) {unknown}; "
                         f"choose from {setting.choices}.")
    elif value not in setting.choices:
      raise ValueError(f"{name}={value!r} is not one of {setting.choices}.")
  if setting.check is not None and not setting.check.ok(value):
    raise ValueError(f"{name}={value!r} {setting.check.text}.")


def _describe(setting: Setting) -> str:
  default = setting.default
  if setting.kind is dict:
    default = dict(default)
  words = [_KINDS[setting.kind], f"default {default!r}"]
  if setting.choices is not None:
    what = "elements from" if setting.kind is tuple else "one of"
    words.append(f"{what} {', '.join(map(str, setting.choices))}")
  if setting.check is not None:
    words.append(setting.check.text)
  return "; ".join(words)


def help_lines(section: Section, path: str = "config", width: int = 80) -> list[str]:
  """What `--help_config` prints: each key as `--path.key (type; default; choices)`
  and its help text below it, sections introduced by their own help."""
  lines = []
  if section.help:
    lines.append(f"{path}: {section.help}")
  for name, entry in section.entries.items():
    if isinstance(entry, Section):
      lines += [""] + help_lines(entry, key(path, name), width)
      continue
    lines.append(f"  --{key(path, name)}  ({_describe(entry)})")
    lines += textwrap.wrap(entry.help, width, initial_indent=" " * 6,
                           subsequent_indent=" " * 6)
  return lines


def overlay(section: Section, values: ml_collections.ConfigDict, stored: Mapping) -> None:
  """Lays `stored` (read from JSON) over `values` in place.

  Keys no longer declared are dropped and keys added since keep their value
  in `values`; open dict settings are copied whole; a comma string or a JSON
  list becomes a tuple (nested lists too). Each section's `migrate` first
  turns its stored form into today's.
  """
  if section.migrate is not None:
    stored = section.migrate(dict(stored))
  for name, value in stored.items():
    entry = section.entries.get(name)
    if entry is None:
      continue  # A key this version no longer has.
    if isinstance(entry, Section):
      overlay(entry, values[name], value)
    elif entry.kind is tuple and isinstance(value, str):
      values[name] = tuple(part for part in value.split(",") if part)
    elif entry.kind is tuple and isinstance(value, list):
      values[name] = tuple(tuple(v) if isinstance(v, list) else v for v in value)
    else:
      values[name] = value
