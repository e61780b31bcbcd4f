"""Field checks for JSON files read back from a run folder (which may be someone else's).

A schema maps field names to a :class:`Field`: the JSON types it may hold and, for numbers,
the range; for strings and lists, the longest. Fields a schema does not name are kept as
they are (newer versions add fields), but the whole object's nesting is bounded when it is
parsed (:func:`.io.parse_json`). A field that breaks its rule is a
:class:`~.io.CorruptFileError` naming the file and the field, never a traceback later in
the code that trusted it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from .io import CorruptFileError

#: The longest string any field may hold unless its Field says otherwise.
MAX_TEXT = 10_000
#: JSON integers are unbounded; no field of ours holds one outside 64 bits.
LARGEST_INT = 2**63


@dataclass(frozen=True)
class Field:
    """The rule for one field: ``kinds`` among ``"int" "float" "str" "bool" "list" "dict"
    "null"`` (``"float"`` admits ints; NaN and inf only with ``nonfinite``), a closed range
    ``[low, high]`` for numbers, and ``longest`` for strings and lists."""

    kinds: tuple[str, ...]
    low: float | None = None
    high: float | None = None
    longest: int = MAX_TEXT
    nonfinite: bool = False


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    return {float: "float", str: "str", list: "list", dict: "dict"}.get(type(value), "other")


def problem(value: Any, rule: Field) -> str | None:
    """Why ``value`` breaks ``rule`` (a short phrase), or None when it keeps it."""
    kind = _kind(value)
    if kind == "int" and "int" not in rule.kinds and "float" in rule.kinds:
        kind = "float"
    if kind not in rule.kinds:
        return f"is a JSON {kind if kind != 'float' else 'number'}, not {' or '.join(rule.kinds)}"
    if kind in ("int", "float"):
        if isinstance(value, int) and abs(value) >= LARGEST_INT:  # 10**400 parses as an int
            return "is a number too large for this field"
        if isinstance(value, float) and not math.isfinite(value):
            return None if rule.nonfinite else "is not a finite number"
        if rule.low is not None and value < rule.low:
            return f"is below {rule.low:g}"
        if rule.high is not None and value > rule.high:
            return f"is above {rule.high:g}"
    if kind in ("str", "list") and len(value) > rule.longest:
        return f"is longer than {rule.longest}"
    return None


def check_fields(
    obj: dict, schema: dict[str, Field], path: str | os.PathLike, fix: str = "", where: str = ""
) -> dict:
    """``obj`` if each field that ``schema`` names keeps its rule (missing fields are fine);
    else a :class:`CorruptFileError` naming ``path``, ``where`` in it and the field."""
    for name, rule in schema.items():
        if name in obj and (why := problem(obj[name], rule)) is not None:
            raise CorruptFileError(path, f"{where}field {name!r} {why}", fix)
    return obj


def check_items(
    items: list, rule: Field, path: str | os.PathLike, name: str, fix: str = ""
) -> list:
    """``items`` if every element keeps ``rule``; else a :class:`CorruptFileError` naming
    the field ``name`` and the element's index."""
    for i, value in enumerate(items):
        if (why := problem(value, rule)) is not None:
            raise CorruptFileError(path, f"field {name!r}[{i}] {why}", fix)
    return items


#: Common rules.
COUNT = Field(("int",), low=0)
#: A result that may have diverged (NaN/inf, or null where a run never measured it).
RESULT = Field(("float", "null"), nonfinite=True)
FRACTION = Field(("float", "null"), low=0.0, high=1.0, nonfinite=True)
TEXT = Field(("str",))
SHORT_TEXT = Field(("str",), longest=200)
MAPPING = Field(("dict",))
