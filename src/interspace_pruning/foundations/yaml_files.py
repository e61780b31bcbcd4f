"""Reading a YAML file that may come from someone else (a sweep file, a campaign queue),
bounded: it is data, never code, and never more work than its size suggests.

``yaml.safe_load`` already refuses Python tags, but three things let a small file cost a
lot: aliases (``*name``), which repeat a node without repeating its text (nine levels of
nine aliases, the "billion laughs", make a 1.5 KB file stand for 10**9 values that every
later walk over the data pays for), deep nesting (PyYAML composes recursively:
``RecursionError``) and sheer size. :func:`load_yaml` reads at most :data:`MAX_YAML_BYTES`,
composes the node graph with :class:`BoundedLoader` (nesting deeper than
:data:`MAX_YAML_DEPTH` or more than :data:`MAX_YAML_NODES` nodes is refused while
composing), then measures the graph as its aliases would expand it, in time linear in the
graph: deeper than :data:`MAX_YAML_DEPTH`, larger than :data:`MAX_YAML_SIZE` (nodes plus the
characters of the scalars) or an alias inside its own anchor (a cycle) is refused before a
single Python object is built. Every refusal is a one-line :class:`YamlFileError` that
names the file.

:func:`brief` shows a value in an error message in at most ~80 characters, whatever its size.
"""

from __future__ import annotations

import itertools
import os
import reprlib
from pathlib import Path
from typing import Any

import yaml

#: Bounds on one YAML file (sweep files and queues are a few KB and nest about 4 deep).
MAX_YAML_BYTES = 2**20
MAX_YAML_DEPTH = 32
MAX_YAML_NODES = 20_000  # nodes as written (an alias counts once); parsing them takes ~1 s
MAX_YAML_SIZE = 2**21  # nodes plus scalar characters, every alias expanded
#: Characters of one number: PyYAML computes a sexagesimal int (``1:59:59:...``) in time
#: quadratic in its length (a 900 KB one took 20 s); a sweep's numbers have a few digits.
MAX_NUMBER_CHARS = 100


class YamlFileError(ValueError):
    """A YAML file that cannot be used: unreadable, not YAML, or beyond the bounds above."""

    def __init__(self, path: str | os.PathLike, message: str) -> None:
        self.path = Path(path)
        super().__init__(message)


class _TooLarge(yaml.YAMLError):
    """Raised inside the loader; :func:`load_yaml` turns it into a :class:`YamlFileError`."""


class BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that counts the nodes it composes and how deep it is, and
    refuses more than :data:`MAX_YAML_NODES` or deeper than :data:`MAX_YAML_DEPTH` before
    the recursion of PyYAML's composer gets anywhere near Python's limit."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: Any, index: Any) -> Any:  # noqa: D102 (PyYAML's hook)
        self._depth += 1
        self._nodes += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise _TooLarge(f"nests deeper than {MAX_YAML_DEPTH} levels")
            if self._nodes > MAX_YAML_NODES:
                raise _TooLarge(f"holds more than {MAX_YAML_NODES} values")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:  # noqa: D102
        _check_number(node)
        return super().construct_yaml_int(node)

    def construct_yaml_float(self, node: yaml.ScalarNode) -> float:  # noqa: D102
        _check_number(node)
        return super().construct_yaml_float(node)


def _check_number(node: yaml.ScalarNode) -> None:
    if len(node.value) > MAX_NUMBER_CHARS:
        raise _TooLarge(
            f"holds a number written with {len(node.value)} characters (line "
            f"{node.start_mark.line + 1}; at most {MAX_NUMBER_CHARS})"
        )


# PyYAML dispatches on the tag, through the functions registered for it: register ours.
BoundedLoader.add_constructor("tag:yaml.org,2002:int", BoundedLoader.construct_yaml_int)
BoundedLoader.add_constructor("tag:yaml.org,2002:float", BoundedLoader.construct_yaml_float)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def check_expanded(root: yaml.Node) -> None:
    """Refuse (``_TooLarge``) a node graph that, its aliases expanded, nests deeper than
    :data:`MAX_YAML_DEPTH`, weighs more than :data:`MAX_YAML_SIZE` (a node: 1, plus its
    characters for a scalar) or refers to itself. Each distinct node is visited once."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:  # every child is measured: this node's size and depth follow
            on_path.discard(key)
            kids = _children(node)
            own = 1 + (len(node.value) if isinstance(node, yaml.ScalarNode) else 0)
            size[key] = own + sum(size[id(k)] for k in kids)
            depth[key] = 1 + max((depth[id(k)] for k in kids), default=0)
            if size[key] > MAX_YAML_SIZE:
                raise _TooLarge(
                    f"expands to more than {MAX_YAML_SIZE} values and characters once its "
                    "aliases (*name) are resolved"
                )
            if depth[key] > MAX_YAML_DEPTH:
                raise _TooLarge(
                    f"nests deeper than {MAX_YAML_DEPTH} levels once its aliases (*name) "
                    "are resolved"
                )
            continue
        if key in size:
            continue
        if key in on_path:
            raise _TooLarge("has an alias inside its own anchor (a structure that holds itself)")
        on_path.add(key)
        stack.append((node, True))
        stack.extend((k, False) for k in _children(node) if id(k) not in size)


def _problem(e: yaml.YAMLError) -> str:
    """One line for a PyYAML error: what, and where."""
    if isinstance(e, yaml.MarkedYAMLError):
        mark = e.problem_mark or e.context_mark
        what = e.problem or e.context or "is not valid YAML"
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        return brief_text(f"{what}{where}", 200)
    lines = str(e).splitlines()
    return brief_text(lines[0] if lines else type(e).__name__, 200)


def load_yaml(path: str | os.PathLike, what: str = "YAML file") -> Any:
    """The data of the YAML file at ``path`` (safe tags only, bounded as the module says);
    a one-line :class:`YamlFileError` naming ``what`` and the file otherwise."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_YAML_BYTES + 1)
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise YamlFileError(path, f"cannot read {what} {path}: {reason}") from None
    if len(data) > MAX_YAML_BYTES:
        raise YamlFileError(
            path, f"{what} {path} is larger than {MAX_YAML_BYTES // 2**20} MiB (refused)"
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise YamlFileError(path, f"{what} {path} is not UTF-8 text ({e.reason})") from None
    loader = None
    try:
        loader = BoundedLoader(text)  # checks the characters already (a ReaderError)
        node = loader.get_single_node()
        if node is None:  # an empty file: None, as yaml.safe_load gives
            return None
        check_expanded(node)
        return loader.construct_document(node)
    except _TooLarge as e:
        raise YamlFileError(path, f"{what} {path} {e} (refused)") from None
    except yaml.YAMLError as e:
        raise YamlFileError(path, f"{what} {path} is not valid YAML: {_problem(e)}") from None
    except (ValueError, OverflowError, TypeError) as e:
        # a scalar PyYAML fails to convert: a 5,000-digit int, a date such as 2001-02-30
        reason = brief_text(str(e) or type(e).__name__, 120)
        raise YamlFileError(path, f"{what} {path} holds a value it cannot read: {reason}") from None
    finally:
        if loader is not None:
            loader.dispose()


_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxlist = _REPR.maxtuple = _REPR.maxset = _REPR.maxfrozenset = 6
_REPR.maxdict = 4
_REPR.maxstring = _REPR.maxother = 60
_REPR.maxlong = 40


def brief_text(text: str, limit: int = 80) -> str:
    """``text`` cut in the middle to at most about ``limit`` characters, on one line."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    head = max(limit * 2 // 3, 1)
    return f"{text[:head]} ... {text[-(limit - head) :]}" if limit - head > 0 else text[:limit]


def brief(value: Any, limit: int = 80) -> str:
    """``repr(value)`` in at most about ``limit`` characters; the work is bounded too (deep,
    long or self-referring values are cut, never walked whole)."""
    return brief_text(_REPR.repr(value), limit)


def data_size(value: Any, limit: int) -> int:
    """How big loaded data is: 1 per value plus the characters of its strings (keys too),
    counted without recursion and only up to ``limit`` (then ``limit + 1``): bounded work
    whatever the value, shared or self-referring parts included."""
    total, stack = 0, [value]
    while stack:
        item = stack.pop()
        total += 1 + (len(item) if isinstance(item, str | bytes) else 0)
        if total > limit:
            return limit + 1
        room = limit - total + 1  # each item counts at least 1: more cannot fit anyway
        if isinstance(item, dict):
            stack.extend(itertools.islice(itertools.chain.from_iterable(item.items()), room))
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend(itertools.islice(item, room))
    return total
