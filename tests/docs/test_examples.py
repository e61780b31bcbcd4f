"""Every ```python block of README.md and docs/ runs (issue 26): the docs cannot rot.

Each page runs in a fresh process (tests/docs/examples.py) in a temporary folder, its
blocks in order in one namespace. ``<!-- no-test: REASON -->`` right above a fence
exempts that block; such blocks must stay few and each must say why.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .examples import ROOT, blocks, markers_without_python, pages, python_blocks
from .test_python_api_page import PAGE as RUN_BLOCK_BY_BLOCK

RUNNER = Path(__file__).with_name("examples.py")
PAGES_WITH_EXAMPLES = [p for p in pages() if python_blocks(p)]
# test_python_api_page runs that page's blocks in order in one folder, each alone, twice:
# stricter than one script, so running it here too would only repeat 20 s of training.
RUN_AS_ONE_SCRIPT = [p for p in PAGES_WITH_EXAMPLES if p != RUN_BLOCK_BY_BLOCK]
MAX_NOT_RUN = 3  # blocks that cannot run in a test (CIFAR-10, a GPU): keep them few


def run_page(page: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    return subprocess.run(
        [sys.executable, str(RUNNER), str(page)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.parametrize(
    "page", RUN_AS_ONE_SCRIPT, ids=[str(p.relative_to(ROOT)) for p in RUN_AS_ONE_SCRIPT]
)
def test_the_examples_of_a_page_run(page, tmp_path):
    proc = run_page(page, tmp_path)
    assert proc.returncode == 0, (
        f"{page.relative_to(ROOT)}:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    )


def test_the_pages_that_teach_the_api_have_examples():
    names = {str(p.relative_to(ROOT)) for p in PAGES_WITH_EXAMPLES}
    for page in [
        "README.md",
        "docs/getting-started.md",
        "docs/python-api.md",
        "docs/deployment.md",
    ]:
        assert page in names, f"no ```python block found in {page}"


def test_blocks_not_run_are_few_and_say_why():
    skipped = [b for p in pages() for b in python_blocks(p) if b.skip is not None]
    assert len(skipped) <= MAX_NOT_RUN, [f"{b.path}:{b.line}" for b in skipped]
    assert all(b.skip for b in skipped)
    for page in pages():
        assert not markers_without_python(page), f"{page}: a no-test marker above no python block"


def test_every_code_block_is_closed_and_labelled():
    for page in pages():
        for block in blocks(page):  # raises on a fence that is never closed
            assert block.code.strip(), f"{page}:{block.line}: empty code block"


def test_a_broken_example_fails_and_names_its_line(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "# A page\n\n```python\nx = 1\n```\n\nText.\n\n```python\nassert x == 2, 'wrong'\n```\n"
    )
    proc = run_page(page, tmp_path)
    assert proc.returncode == 1
    assert f"{page}:10" in proc.stderr  # the failing block's first line
    assert f'File "{page}", line 10' in proc.stderr


def test_a_marked_block_is_not_run_and_a_marker_needs_a_reason(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("<!-- no-test: needs CIFAR-10 -->\n```python\nraise SystemExit(3)\n```\n")
    proc = run_page(page, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "not run (needs CIFAR-10)" in proc.stdout
    page.write_text("<!-- no-test: -->\n```python\npass\n```\n")
    with pytest.raises(ValueError, match="needs a reason"):
        python_blocks(page)


def test_indented_blocks_in_lists_are_found(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("- item:\n\n  ```python\n  if True:\n      y = 2\n  ```\n")
    (block,) = python_blocks(page)
    assert block.code == "if True:\n    y = 2\n" and block.line == 4
