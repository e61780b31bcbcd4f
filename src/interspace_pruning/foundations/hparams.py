"""Typed hyperparameter dataclasses that generate their own command-line flags, config-file
entries and run identity.

Each field becomes ``--field-name``; its type, default, ``choices`` and ``help`` (from the
field's metadata, see :func:`hp`) drive argparse. Booleans get ``--flag/--no-flag``. The
help states the default once: ``(default: X)`` is appended unless the help text already says
it (``"crop size (default 224; Tiny-ImageNet 64)"``, ``"(off by default)"``).

A field is known by its *key*: its name unless :func:`hp` gives ``key=`` (the name under
which it is written to config files, read from sweep files and hashed, e.g. a field whose
attribute name changed after runs were named). Sweep files and :func:`coerce` accept the key
or the attribute name. A field with ``flatten=True`` holds a nested dataclass whose fields
appear in the parent as the parent's own: their keys, flags and hash entries (e.g. a run's
:class:`~interspace_pruning.Representation` is ``representation``, ``basis``, ``share``, ...
of its pruning section).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import difflib
import functools
import hashlib
import json
import re
import reprlib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
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
    *,
    key: str | None = None,
    aliases: typing.Sequence[str] = (),
    flatten: bool = False,
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

    ``key``: the field's name in config files, sweep files and the hash (default: its
    attribute name); the flag is ``--key`` unless ``flag`` says otherwise, and ``aliases``
    are further flags for it. ``flatten``: the field holds a nested dataclass whose fields
    count as the parent's own (see the module docstring).
    """
    if identity not in IDENTITY_MODES:
        raise ValueError(f"identity must be one of {IDENTITY_MODES}, got {identity!r}")
    meta = {
        "help": help,
        "choices": choices,
        "flag": flag,
        "identity": identity,
        "key": key,
        "aliases": tuple(aliases),
        "flatten": flatten,
    }
    return dataclasses.field(default=default, metadata=meta)


def base_type(tp: Any) -> tuple[Any, bool]:
    """``(type, optional)`` for ``X`` or ``X | None`` (a ``Literal`` of strings is ``str``)."""
    optional = False
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        tp, optional = args[0], True
    if typing.get_origin(tp) is typing.Literal:
        tp = type(typing.get_args(tp)[0])
    return tp, optional


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


@dataclass(frozen=True)
class Leaf:
    """One hyperparameter of a (possibly nested) dataclass: its key, where it lives
    (``path`` of attribute names from the top), its field and its resolved type."""

    key: str
    path: tuple[str, ...]
    field: dataclasses.Field
    hint: Any

    @property
    def name(self) -> str:
        return self.path[-1]


def _flattened(f: dataclasses.Field, hint: Any) -> type | None:
    """The nested dataclass type of a ``flatten`` field (``None`` for other fields)."""
    if not f.metadata.get("flatten"):
        return None
    tp = base_type(hint)[0]
    return tp if dataclasses.is_dataclass(tp) else None


def leaves(cls: type) -> list[Leaf]:
    """The hyperparameters of dataclass ``cls``, nested ``flatten`` fields expanded."""
    return list(_leaves(cls))


@functools.cache
def _leaves(cls: type) -> tuple[Leaf, ...]:
    # cached: typing.get_type_hints costs ~2 ms, and a sweep asks once per cell and key
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        sub = _flattened(f, hints[f.name])
        if sub is not None:
            out += [dataclasses.replace(leaf, path=(f.name, *leaf.path)) for leaf in leaves(sub)]
        elif not f.metadata.get("flatten"):
            out.append(Leaf(f.metadata.get("key") or f.name, (f.name,), f, hints[f.name]))
    return tuple(out)


def find_leaf(cls: type, name: str, where: str = "") -> Leaf:
    """The hyperparameter of ``cls`` whose key (or else attribute name) is ``name``."""
    found = leaves(cls)
    for leaf in found:
        if leaf.key == name:
            return leaf
    for leaf in found:
        if leaf.name == name:
            return leaf
    close = difflib.get_close_matches(name, sorted({leaf.key for leaf in found}), n=1)
    shown = where or name  # the key as the user wrote it, with its section
    prefix = shown[: -len(name)] if shown.endswith(name) else ""
    hint = f" (did you mean {prefix + close[0]!r}?)" if close else ""
    raise ValueError(f"unknown hyperparameter {shown!r}{hint}")


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def leaf_default(cls: type, leaf: Leaf) -> Any:
    """The default of ``leaf`` in ``cls`` (a nested one: from its parent field's default)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    value = _field_default(fields[leaf.path[0]])
    for name in leaf.path[1:]:
        value = getattr(value, name)
    return value


def build(cls: type[T], values: Mapping[str, Any], base: T | None = None) -> T:
    """``cls`` with the hyperparameters in ``values`` (by key or attribute name) set, the
    others taken from ``base`` (or the defaults); nested ``flatten`` fields are rebuilt."""
    return _assign(cls, base, [(find_leaf(cls, k).path, v) for k, v in values.items()])


def _assign(cls: type, base: Any, items: list[tuple[tuple[str, ...], Any]]) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    nested: dict[str, list] = {}
    for path, value in items:
        if len(path) == 1:
            kwargs[path[0]] = value
        else:
            nested.setdefault(path[0], []).append((path[1:], value))
    for name, sub_items in nested.items():
        sub_base = getattr(base, name) if base is not None else _field_default(fields[name])
        sub_cls = _flattened(fields[name], hints[name])
        kwargs[name] = _assign(sub_cls, sub_base, sub_items)
    return cls(**kwargs) if base is None else dataclasses.replace(base, **kwargs)


def add_arguments(parser: argparse.ArgumentParser, cls: type, title: str | None = None) -> None:
    """Add one flag per hyperparameter of dataclass ``cls`` to ``parser`` (dest: its key)."""
    group = parser.add_argument_group(title or cls.__name__)
    for leaf in leaves(cls):
        tp, _ = base_type(leaf.hint)
        meta = leaf.field.metadata
        names = [meta.get("flag") or flag(leaf.key), *meta.get("aliases", ())]
        default = leaf_default(cls, leaf)
        help_text = meta.get("help", "")
        if typing.get_origin(tp) is tuple:
            group.add_argument(
                *names,
                dest=leaf.key,
                action="append",
                default=None,
                metavar="VALUE",
                help=f"{help_text} (repeatable)",
            )
            continue
        if tp is bool:
            group.add_argument(
                *names,
                dest=leaf.key,
                action=argparse.BooleanOptionalAction,
                default=default,
                help=help_with_default(help_text, default),
            )
            continue
        choices = meta.get("choices")
        if callable(choices):
            choices = tuple(choices())
        group.add_argument(
            *names,
            dest=leaf.key,
            type=tp,
            default=default,
            choices=choices,
            metavar=None if choices else leaf.name.upper(),
            help=help_with_default(help_text, default),
        )


#: A help text that speaks of its default itself ("default 224", "off by default").
_SAYS_DEFAULT = re.compile(r"\bdefault\b", re.IGNORECASE)


def help_with_default(text: str, default: Any) -> str:
    """``text`` with ``(default: X)`` appended, unless it already states its default: each
    flag's help says its default once. ``None`` is shown as ``none``."""
    if _SAYS_DEFAULT.search(text):
        return text
    shown = "none" if default is None else str(default).replace("%", "%%")  # argparse's %
    return f"{text} (default: {shown})" if text else f"default: {shown}"


def from_namespace(cls: type[T], ns: argparse.Namespace) -> T:
    """Build ``cls`` from the parsed flags (hyperparameters absent from ``ns`` keep defaults)."""
    values = {leaf.key: getattr(ns, leaf.key) for leaf in leaves(cls) if hasattr(ns, leaf.key)}
    return build(cls, values)


def from_dict(cls: type[T], values: Mapping[str, Any], where: str = "", check: bool = True) -> T:
    """``cls`` from a mapping of keys (or attribute names) to values, as :func:`to_dict`
    writes it; unknown entries are ignored (a field that no longer exists), every value is
    type-checked with :func:`coerce` unless ``check`` is false."""
    known = {}
    for k, v in values.items():
        try:
            leaf = find_leaf(cls, k)
        except ValueError:
            continue
        known[leaf.key] = coerce(cls, leaf.key, v, f"{where}.{k}" if where else k) if check else v
    return build(cls, known)


def to_dict(obj: Any) -> dict:
    """A (nested) dataclass as plain data, every hyperparameter under its key; ``flatten``
    fields are merged into their parent (a mapping of dataclasses: each under its own key)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.metadata.get("flatten"):
            if isinstance(value, Mapping):
                out.update({k: to_dict(v) for k, v in value.items()})
            else:
                out.update(to_dict(value))
            continue
        key = f.metadata.get("key") or f.name
        out[key] = to_dict(value) if dataclasses.is_dataclass(value) else copy.deepcopy(value)
    return out


def identity_dict(obj: Any) -> Any:
    """The values of a (nested) dataclass that identify a run, under their keys: fields
    marked ``identity=False`` are left out, ``identity="non-default"`` ones when at their
    default. A dataclass may define ``__identity__()`` to say itself what identifies it."""
    if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        return obj
    own = getattr(obj, "__identity__", None)
    if own is not None:
        return own()
    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        mode = f.metadata.get("identity", True)
        if mode is False or (mode == "non-default" and value == f.default):
            continue
        if f.metadata.get("flatten") and dataclasses.is_dataclass(value):
            out.update(identity_dict(value))
            continue
        key = f.metadata.get("key") or f.name
        out[key] = identity_dict(value) if dataclasses.is_dataclass(value) else value
    return out


def config_hash(obj: Any, length: int = 10) -> str:
    """Stable short hash of the values that identify a run (see :func:`identity_dict`)."""
    blob = json.dumps(identity_dict(obj), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def coerce(cls: type, name: str, value: Any, where: str = "") -> Any:
    """Check ``value`` against the type of hyperparameter ``name`` (a key or attribute
    name) of dataclass ``cls``.

    Ints are accepted for floats (and converted); anything else of the wrong type raises a
    ``ValueError`` naming the field, e.g. a YAML ``5e-4`` that YAML reads as a string.
    """
    tp, optional = base_type(find_leaf(cls, name, where).hint)
    if value is None:
        if optional:
            return None
        raise ValueError(f"{where or name} may not be empty")
    if typing.get_origin(tp) is tuple:  # the dataclass normalises lists, tuples, mappings
        if not isinstance(value, list | tuple | dict | str):
            raise ValueError(f"{where or name} must be a list, got {reprlib.repr(value)}")
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is bool and not isinstance(value, bool):
        raise ValueError(f"{where or name} must be true or false, got {reprlib.repr(value)}")
    if tp is int and isinstance(value, bool):
        raise ValueError(f"{where or name} must be an integer, got {reprlib.repr(value)}")
    if not isinstance(value, tp):
        hint = ""
        if tp is str and isinstance(value, int | float):  # YAML 1.1 reads 2:4 as 124
            hint = " (quote it: YAML reads some unquoted text, such as 2:4, as a number)"
        raise ValueError(f"{where or name} must be {tp.__name__}, got {reprlib.repr(value)}{hint}")
    return value
