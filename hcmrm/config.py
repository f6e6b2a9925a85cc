"""One config mechanism: dataclasses built from YAML, with flags laid over by one merge rule.

    config = load(ScoreJobConfig, CONF_DIR / "jobs" / "score.yaml", {"device": args.device, "engine.bf16": False})

- `from_dict(cls, values)` builds a dataclass: a nested dataclass field from a nested dict, a tuple
  field from a list, an Optional field from null; a field typed `dict` keeps its dict as it is.
  A key that is not a field is an error naming the source and the key's full path.
- `merge(base, overrides)` is the only merge: nested dicts merge key by key, a dotted key such as
  `text.hidden` reaches into `text`, and an override of None is ignored (an unset flag).
- `load(cls, path, overrides)` = `from_dict(cls, merge(the YAML file, overrides))`, and
  `override(config, overrides)` the same over an existing config.
- `to_dict(config)` is the inverse of `from_dict`: plain nested dicts, tuples as lists.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config that does not fit its dataclass (a ValueError, so callers may catch either)."""


def read_yaml(path: str | Path) -> dict:
    """The mapping a YAML file holds ({} for an empty file)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no config file at {path}")
    values = yaml.safe_load(path.read_text(encoding="utf-8"))
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise ConfigError(f"{path} must hold a mapping of keys, not a {type(values).__name__}")
    return dict(values)


def merge(base: Mapping, overrides: Mapping | None) -> dict:
    """`base` with `overrides` laid over it: dicts merge key by key, `a.b` means {a: {b: ...}}, None is ignored."""
    out = dict(base)
    for key, value in (overrides or {}).items():
        if value is None:  # an unset flag leaves the file's value
            continue
        head, dot, rest = str(key).partition(".")
        if dot:
            key, value = head, {rest: value}
        if isinstance(value, Mapping):
            below = out.get(key)
            value = merge(below if isinstance(below, Mapping) else {}, value)
        out[key] = value
    return out


def load(cls: type[T], path: str | Path, overrides: Mapping | None = None, overrides_from: str = "flags") -> T:
    """A `cls` from the YAML file at `path` with `overrides` merged over it; unknown keys name where they came from."""
    values = read_yaml(path)
    check_keys(cls, values, str(path))
    overrides = merge({}, overrides)
    check_keys(cls, overrides, overrides_from)
    return from_dict(cls, merge(values, overrides), f"{path} with {overrides_from}" if overrides else str(path))


def from_dict(cls: type[T], values: Mapping, source: str = "the given values") -> T:
    """A `cls` built from `values`; missing keys keep the dataclass defaults."""
    check_keys(cls, values, source)
    try:
        return _build(cls, values, source, "")
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:  # a dataclass's own validation, said with where the values came from
        raise ConfigError(f"{err} (in {source})") from err


def override(config: T, overrides: Mapping | None, source: str = "overrides") -> T:
    """A copy of the dataclass `config` with `overrides` merged over it (the same rule as `load`)."""
    return from_dict(type(config), merge(to_dict(config), overrides), source)


def to_dict(config: Any) -> dict:
    """The plain nested dict of a dataclass (tuples as lists): what `from_dict` reads back, and YAML/JSON can hold."""
    return _plain(dataclasses.asdict(config))


def check_keys(cls: type, values: Mapping, source: str, prefix: str = "") -> None:
    """Refuse any key of `values` (at any depth of nested dataclasses) that is not a field."""
    fields = _field_types(cls)
    unknown = sorted(str(k) for k in values if k not in fields)
    if unknown:
        which = "key" if len(unknown) == 1 else "keys"
        named = ", ".join(repr(prefix + k) for k in unknown)
        raise ConfigError(f"unknown {which} {named} in {source}; known: {[prefix + k for k in sorted(fields)]}")
    for key, value in values.items():
        nested = _dataclass_in(fields[key])
        if nested is not None and isinstance(value, Mapping):
            check_keys(nested, value, source, f"{prefix}{key}.")


# --- building -----------------------------------------------------------------------------------


def _field_types(cls: type) -> dict[str, Any]:
    """{field name: resolved type} of the fields a dataclass's __init__ takes."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def _without_none(tp: Any) -> Any:
    """`X | None` -> X (other types unchanged)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        kept = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(kept) == 1:
            return kept[0]
    return tp


def _dataclass_in(tp: Any) -> type | None:
    tp = _without_none(tp)
    return tp if isinstance(tp, type) and dataclasses.is_dataclass(tp) else None


def _build(cls: type[T], values: Mapping, source: str, prefix: str) -> T:
    fields = _field_types(cls)
    return cls(**{key: _value(fields[key], value, source, prefix + key) for key, value in values.items()})


def _value(tp: Any, value: Any, source: str, path: str) -> Any:
    if value is None:
        return None
    nested = _dataclass_in(tp)
    if nested is not None:
        if isinstance(value, nested):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"'{path}' in {source} must be a mapping of {nested.__name__} keys, got {value!r}")
        return _build(nested, value, source, path + ".")
    tp = _without_none(tp)
    if tp is tuple or typing.get_origin(tp) is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"'{path}' in {source} must be a list, got {value!r}")
        return tuple(value)
    if tp is dict or typing.get_origin(tp) is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"'{path}' in {source} must be a mapping, got {value!r}")
        return dict(value)
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
