"""The documentation site builds with ``mkdocs build --strict`` (issue 26).

Strict mode fails on any warning: a link to a page or file that does not exist, an anchor
that no heading makes, a page left out of the nav, a docstring mkdocstrings cannot parse.
Skipped, with the reason, where MkDocs Material or mkdocstrings is not installed
(``pip install -e ".[docs]"``).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import interspace_pruning as ip

from .examples import ROOT

MISSING = [
    name
    for name in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers")
    if importlib.util.find_spec(name) is None
]
needs_mkdocs = pytest.mark.skipif(
    bool(MISSING), reason=f"not installed: {MISSING} (pip install -e '.[docs]')"
)


def mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@needs_mkdocs
def test_the_site_builds_strictly(tmp_path):
    proc = mkdocs_build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert proc.returncode == 0, proc.stderr[-6000:]
    reference = (tmp_path / "site" / "reference" / "index.html").read_text()
    assert 'id="interspace_pruning.prepare"' in reference  # mkdocstrings rendered the API
    assert ":func:" not in reference  # the Sphinx roles of the docstrings are rendered
    assert (tmp_path / "site" / "results" / "index.html").is_file()


def small_site(tmp_path: Path, page: str) -> Path:
    """Our mkdocs.yml (theme, validation, plugins) on a one-page site."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text(page)
    (docs / "other.md").write_text("# Other\n\n## A heading\n")
    config["docs_dir"] = str(docs)
    config["nav"] = ["index.md", "other.md"]
    config["hooks"] = [str(ROOT / h) for h in config.get("hooks", [])]
    for plugin in config["plugins"]:
        if isinstance(plugin, dict) and "mkdocstrings" in plugin:
            handler = plugin["mkdocstrings"]["handlers"]["python"]
            handler["paths"] = [str(ROOT / p) for p in handler["paths"]]
    path = tmp_path / "mkdocs.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@needs_mkdocs
@pytest.mark.parametrize(
    "link, ok",
    [
        ("[fine](other.md#a-heading)", True),
        ("[no such page](missing.md)", False),
        ("[no such heading](other.md#no-such-heading)", False),
        ("[no such anchor here](#nowhere)", False),
        ("![no such image](missing.png)", False),
    ],
)
def test_a_wrong_link_fails_the_build(tmp_path, link, ok):
    config = small_site(tmp_path, f"# Home\n\nSee {link}.\n")
    proc = mkdocs_build(config, tmp_path / "site")
    assert (proc.returncode == 0) == ok, proc.stderr[-3000:]


def test_the_reference_covers_every_public_name():
    """Each name of ``interspace_pruning.__all__`` has a ``::: path`` in docs/reference.md."""
    import importlib

    documented = []
    for line in (ROOT / "docs" / "reference.md").read_text().splitlines():
        if line.startswith("::: "):
            module, _, attr = line[4:].strip().rpartition(".")
            try:
                documented.append(importlib.import_module(line[4:].strip()))
            except ImportError:
                documented.append(getattr(importlib.import_module(module), attr))
    missing = [n for n in ip.__all__ if not any(getattr(ip, n) is d for d in documented)]
    assert not missing, f"add to docs/reference.md: {missing}"


def test_every_page_is_in_the_nav():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())

    def walk(nav):
        for item in nav:
            if isinstance(item, str):
                yield item
            elif isinstance(item, dict):
                for value in item.values():
                    yield from walk(value) if isinstance(value, list) else [value]

    listed = set(walk(config["nav"]))
    docs = ROOT / "docs"
    pages = {
        str(p.relative_to(docs))
        for p in docs.rglob("*.md")
        if "runs" not in p.relative_to(docs).parts
    }
    assert pages == listed, (pages - listed, listed - pages)
