"""Typed configs: nested dataclasses <-> plain dicts (JSON/YAML), with strict keys.

Every config of the project is a dataclass of named, defaulted fields. :func:`from_dict` builds
one from a dict and refuses unknown keys with the dotted path of the key and the known ones
(a typo must not be ignored silently); :func:`to_dict` goes back. :func:`apply_overrides` applies
``--set section.key=value`` strings (values parsed as YAML: ``3``, ``true``, ``null``, ``[a, b]``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Mapping, Sequence, TypeVar

import yaml

from mner.errors import MNERError

__all__ = ["ConfigError", "from_dict", "to_dict", "apply_overrides", "load_yaml"]

T = TypeVar("T")


class ConfigError(MNERError, ValueError):
    """A config that does not fit its dataclass; the message names the key."""


def to_dict(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Mapping):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def _dataclass_type(tp: Any) -> type | None:
    """The dataclass inside ``tp`` (``X``, ``X | None``, ``Optional[X]``), if any."""
    if dataclasses.is_dataclass(tp):
        return tp
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            if dataclasses.is_dataclass(arg):
                return arg
    return None


def _allows_none(tp: Any) -> bool:
    """Whether annotation ``tp`` admits None (``X | None``, ``Optional[X]``)."""
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _check_type(value: Any, tp: Any, key: str) -> Any:
    """The value, checked against simple annotations (int, float, bool, str, ``X | None``,
    ``Literal``, ``list[X]``); other annotations are left to the dataclass. The one coercion:
    a float written ``5e-5`` (PyYAML reads exponents without a dot as strings)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return value
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_type(value, arg, key)
            except ConfigError:
                pass
        raise ConfigError(f"{key}: expected {' or '.join(_type_name(a) for a in args)}, got {value!r}")
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{key}: expected one of {list(typing.get_args(tp))}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item,) = typing.get_args(tp)[:1] or (Any,)
        return [_check_type(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    ok = {
        bool: lambda v: isinstance(v, bool),
        int: lambda v: isinstance(v, int) and not isinstance(v, bool),
        float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        str: lambda v: isinstance(v, str),
    }.get(tp)
    if tp is float and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    if ok is not None and not ok(value):
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    return value


def from_dict(cls: type[T], data: Mapping[str, Any] | None, path: str = "") -> T:
    """Build dataclass ``cls`` from ``data`` (nested dataclasses recursively)."""
    if data is None:
        data = {}
    if isinstance(data, cls):
        return data
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path or cls.__name__}: expected a mapping of keys, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{path}." if path else ""
        raise ConfigError(
            f"unknown config key{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(where + k for k in unknown)}; known keys{' of ' + path if path else ''}: "
            f"{', '.join(sorted(fields))}"
        )
    kwargs = {}
    for name, value in data.items():
        sub = _dataclass_type(hints.get(name))
        key = f"{path}.{name}" if path else name
        if sub is not None:
            if isinstance(value, Mapping):
                kwargs[name] = from_dict(sub, value, key)
            elif isinstance(value, sub) or (value is None and _allows_none(hints[name])):
                kwargs[name] = value
            else:
                raise ConfigError(
                    f"{key}: expected a mapping of {sub.__name__} keys, got {type(value).__name__} "
                    f"{value!r}"
                )
        else:
            kwargs[name] = _check_type(value, hints[name], key) if name in hints else value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{path or cls.__name__}: {err}") from None


def _parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """``["training.epochs=3", "model.no_image=true"]`` applied to a nested dict (in a copy)."""
    import copy

    out = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. training.epochs=3")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        node = out
        for p in parts[:-1]:
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"--set {item!r}: {p} is a value, not a section")
            node = nxt
        node[parts[-1]] = _parse_value(value.strip())
    return out


def load_yaml(path: str) -> dict[str, Any]:
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: config file not found")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{p}{line}: not valid YAML ({getattr(err, 'problem', err)})") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{p}: not a text file (byte {err.object[err.start]:#04x} at offset {err.start} is not "
                          "UTF-8); give a YAML config file") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping (model:, data:, training:)")
    return data
