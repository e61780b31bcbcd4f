"""The ```python blocks of the documentation, extracted and run.

A page's blocks run in order in one namespace, as one script would (later blocks use what
earlier ones defined), in a fresh process whose working directory is a temporary folder. A
block preceded by ``<!-- no-test: REASON -->`` (the line right above its fence) is shown
but not run; the reason is required.

Run one page by hand: ``python tests/docs/examples.py docs/python-api.md``.
"""

from __future__ import annotations

import re
import sys
import textwrap
import traceback
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OPEN = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)[^`]*$")
MARKER = re.compile(r"^\s*<!--\s*no-test:(?P<reason>.*?)-->\s*$")


@dataclass
class Block:
    path: Path
    line: int  # 1-based line of the block's first code line
    lang: str
    code: str
    skip: str | None  # the no-test reason, or None


def pages() -> list[Path]:
    """README.md and every Markdown page of the site."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def blocks(path: Path) -> list[Block]:
    """Every fenced block of ``path`` (any language), with its no-test marker if any."""
    lines = path.read_text(encoding="utf-8").splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = OPEN.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = m["indent"], m["fence"], m["lang"].lower()
        j = i + 1
        while j < len(lines) and lines[j].strip() != fence:
            j += 1
        if j == len(lines):
            raise ValueError(f"{path}:{i + 1}: code block never closed")
        body = [
            ln[len(indent) :] if ln.startswith(indent) else ln.lstrip() for ln in lines[i + 1 : j]
        ]
        above = lines[i - 1] if i > 0 else ""
        marker = MARKER.match(above)
        skip = None
        if marker:
            skip = marker["reason"].strip()
            if not skip:
                raise ValueError(f"{path}:{i}: a no-test marker needs a reason")
        out.append(Block(path, i + 2, lang, textwrap.dedent("\n".join(body)) + "\n", skip))
        i = j + 1
    return out


def python_blocks(path: Path) -> list[Block]:
    return [b for b in blocks(path) if b.lang in ("python", "py")]


def markers_without_python(path: Path) -> list[int]:
    """Lines of no-test markers that do not stand right above a ```python block."""
    lines = path.read_text(encoding="utf-8").splitlines()
    marked = {b.line - 2 for b in python_blocks(path) if b.skip is not None}  # 0-based marker
    return [i + 1 for i, ln in enumerate(lines) if MARKER.match(ln) and i not in marked]


def run_page(path: Path) -> int:
    """Run the page's python blocks in order; print a traceback that names the doc line."""
    import torch

    torch.set_num_threads(1)  # shared CI cores: oversubscribed threads are 30x slower here
    namespace: dict = {"__name__": "__main__"}
    ran = 0
    for block in python_blocks(path):
        if block.skip is not None:
            print(f"{path}:{block.line}: not run ({block.skip})")
            continue
        source = "\n" * (block.line - 1) + block.code  # traceback lines are the page's lines
        try:
            exec(compile(source, str(path), "exec"), namespace)
        except BaseException:
            traceback.print_exc()
            print(f"FAILED: the example at {path}:{block.line}", file=sys.stderr)
            return 1
        ran += 1
    print(f"{path}: {ran} examples ran")
    return 0


if __name__ == "__main__":
    sys.exit(run_page(Path(sys.argv[1]).resolve()))
