"""The README is the short front page (issue 26); its links work, its security table is whole.

The README is not part of the MkDocs build, so its links are checked here: every relative
link or image names a file of the repository, and every ``#anchor`` into a docs page names a
heading of that page (slugged as MkDocs' toc extension does).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from .examples import ROOT

README = ROOT / "README.md"
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
MAX_LINES = 200


def slug(heading: str) -> str:
    """MkDocs' default toc slug (markdown.extensions.toc.slugify), for plain-text headings."""
    import unicodedata

    text = re.sub(r"`([^`]*)`", r"\1", heading)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {slug(m[1]) for m in re.finditer(r"^#{1,6}\s+(.*?)\s*$", text, flags=re.M)}


def links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return LINK.findall(text)


def test_the_readme_is_short():
    n = len(README.read_text().splitlines())
    assert n <= MAX_LINES, f"README.md has {n} lines; move detail to docs/ (at most {MAX_LINES})"


def test_every_readme_link_resolves():
    broken = []
    for target in links(README):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (README.parent / path).resolve() if path else README
        if not file.exists() or (anchor and file.suffix == ".md" and anchor not in anchors(file)):
            broken.append(target)
    assert not broken, f"README.md links to nothing: {broken}"


def test_the_link_checker_sees_a_wrong_link(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("# Top\n\n## Two words\n\n[a](p.md#two-words) [b](q.md) ![c](x.png)\n")
    assert links(page) == ["p.md#two-words", "q.md", "x.png"]
    assert anchors(page) == {"top", "two-words"}
    assert (
        slug("CPU results depend on the thread count") == "cpu-results-depend-on-the-thread-count"
    )
    assert (
        slug("Any model: `--model package.module:callable`")
        == "any-model-model-packagemodulecallable"
    )


# Calls that deserialise data, import code or run a program: each file that makes one must
# be named in the README's security table, with why it is safe.
RISKY_CALLS = {
    ("torch", "load"),
    ("np", "load"),
    ("numpy", "load"),
    ("importlib", "import_module"),
    ("importlib", "__import__"),
    ("yaml", "safe_load"),
    ("yaml", "load"),
    ("yaml", "unsafe_load"),
    ("pickle", "load"),
    ("pickle", "loads"),
    ("ctypes", "CDLL"),
    ("subprocess", "run"),
    ("subprocess", "Popen"),
    ("subprocess", "check_output"),
    ("util", "find_spec"),
}
RISKY_NAMES = {"eval", "exec", "__import__", "import_module", "CDLL", "find_spec"}
# A class built on one of these deserialises whatever its methods are fed (a restricted
# unpickler, a bounded YAML loader): the file defining it belongs in the table too.
DESERIALISER_BASE = re.compile(r"Unpickler|yaml\.\w*Loader")


def risky_files() -> set[str]:
    found = set()
    src = ROOT / "src" / "interspace_pruning"
    for path in src.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and any(
                DESERIALISER_BASE.search(ast.unparse(base)) for base in node.bases
            ):
                found.add(str(path.relative_to(src)))
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name | ast.Attribute):
                owner = func.value.id if isinstance(func.value, ast.Name) else func.value.attr
                if (owner, func.attr) in RISKY_CALLS:
                    found.add(str(path.relative_to(src)))
            elif isinstance(func, ast.Name) and func.id in RISKY_NAMES:
                found.add(str(path.relative_to(src)))
    return found


def test_the_security_table_names_every_file_that_deserialises_or_imports():
    text = README.read_text()
    section = text[text.index("## Security") :]
    files = risky_files()
    assert {"foundations/checkpoint.py", "models/__init__.py", "foundations/yaml_files.py"} <= files
    missing = sorted(f for f in files if f"`{f}" not in section and f" {f}" not in section)
    assert not missing, f"README.md's Security table does not name: {missing}"
