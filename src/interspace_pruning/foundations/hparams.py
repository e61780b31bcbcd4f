"""Typed hyperparameter dataclasses that generate their own command-line flags.

Each field becomes ``--field-name``; its type, default, ``choices`` and ``help`` (from the
field's metadata) drive argparse. Booleans get ``--flag/--no-flag``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")


#: ``identity`` values of :func:`hp`.
IDENTITY_MODES = (True, False, "non-default")


def hp(
    default: Any,
    help: str,
    choices: typing.Sequence[Any] | typing.Callable[[], typing.Sequence[Any]] | None = None,
    flag: str | None = None,
    identity: bool | str = True,
) -> Any:
    """A dataclass field with CLI help text, optional choices and optional flag name.

    ``choices`` is a sequence, or a function returning one, read when the parser is built
    (e.g. a registry that users extend). A ``tuple[str, ...]`` field becomes a repeatable
    flag (each use appends one value).

    ``identity`` says whether the field is part of a run's identity (:func:`config_hash`):
    ``True`` (results depend on it), ``False`` (execution only, e.g. the device: a run may
    resume on another one), or ``"non-default"`` (results depend on it, but it was added
    after runs were named, so it is hashed only when it differs from ``default`` and
    existing run directories keep their names).
    """
    if identity not in IDENTITY_MODES:
        raise ValueError(f"identity must be one of {IDENTITY_MODES}, got {identity!r}")
    meta = {"help": help, "choices": choices, "flag": flag, "identity": identity}
    return dataclasses.field(default=default, metadata=meta)


def _base_type(tp: Any) -> tuple[type, bool]:
    """``(type, optional)`` for ``X`` or ``X | None``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], True
    return tp, False


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser, cls: type, title: str | None = None) -> None:
    """Add one flag per field of dataclass ``cls`` to ``parser``."""
    group = parser.add_argument_group(title or cls.__name__)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp, optional = _base_type(hints[f.name])
        meta = f.metadata
        help_text = meta.get("help", "")
        if typing.get_origin(tp) is tuple:
            group.add_argument(
                meta.get("flag") or flag(f.name),
                dest=f.name,
                action="append",
                default=None,
                metavar="VALUE",
                help=f"{help_text} (repeatable)",
            )
            continue
        if tp is bool:
            group.add_argument(
                flag(f.name),
                action=argparse.BooleanOptionalAction,
                default=f.default,
                help=f"{help_text} (default: {f.default})",
            )
            continue
        shown = "none" if f.default is None else f.default
        choices = meta.get("choices")
        if callable(choices):
            choices = tuple(choices())
        group.add_argument(
            flag(f.name),
            type=tp,
            default=f.default,
            choices=choices,
            metavar=None if choices else f.name.upper(),
            help=f"{help_text} (default: {shown})" + (" [optional]" if optional else ""),
        )


def from_namespace(cls: type[T], ns: argparse.Namespace) -> T:
    """Build ``cls`` from the parsed flags (fields absent from ``ns`` keep defaults)."""
    kwargs = {f.name: getattr(ns, f.name) for f in dataclasses.fields(cls) if hasattr(ns, f.name)}
    return cls(**kwargs)


def to_dict(obj: Any) -> dict:
    return dataclasses.asdict(obj)


def identity_dict(obj: Any) -> Any:
    """The values of a (nested) dataclass that identify a run: fields marked
    ``identity=False`` are left out, ``identity="non-default"`` ones when at their default."""
    if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        return obj
    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        mode = f.metadata.get("identity", True)
        if mode is False or (mode == "non-default" and value == f.default):
            continue
        out[f.name] = identity_dict(value) if dataclasses.is_dataclass(value) else value
    return out


def config_hash(obj: Any, length: int = 10) -> str:
    """Stable short hash of the values that identify a run (see :func:`identity_dict`)."""
    blob = json.dumps(identity_dict(obj), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def coerce(cls: type, name: str, value: Any, where: str = "") -> Any:
    """Check ``value`` against the type of field ``name`` of dataclass ``cls``.

    Ints are accepted for floats (and converted); anything else of the wrong type raises a
    ``ValueError`` naming the field, e.g. a YAML ``5e-4`` that YAML reads as a string.
    """
    hints = typing.get_type_hints(cls)
    if name not in hints:
        raise ValueError(f"unknown hyperparameter {where or name!r}")
    tp, optional = _base_type(hints[name])
    if value is None:
        if optional:
            return None
        raise ValueError(f"{where or name} may not be empty")
    if typing.get_origin(tp) is tuple:  # the dataclass normalises lists, tuples, mappings
        if not isinstance(value, list | tuple | dict | str):
            raise ValueError(f"{where or name} must be a list, got {value!r}")
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is bool and not isinstance(value, bool):
        raise ValueError(f"{where or name} must be true or false, got {value!r}")
    if tp is int and isinstance(value, bool):
        raise ValueError(f"{where or name} must be an integer, got {value!r}")
    if not isinstance(value, tp):
        raise ValueError(f"{where or name} must be {tp.__name__}, got {value!r}")
    return value
