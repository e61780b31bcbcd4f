"""The site's search, in a real headless browser: it works when the site is served over http,
and stays at "Initializing search" when the built pages are opened as files.

MkDocs Material runs its search in a web worker fed by ``search/search_index.json``; a page
opened from ``file://`` may start neither (Material then looks for the ``search_index.js``
that only its ``offline`` plugin writes, and that plugin fetches a worker shim from
unpkg.com). docs/index.md says so; this test keeps that sentence true.

Skipped, with the reason, unless MkDocs Material, the ``playwright`` Python package and a
Chromium are installed (``apt-get install chromium``, ``pip install playwright``; the
browser is the system one: ``INTERSPACE_CHROMIUM``, else ``chromium`` on PATH).
Playwright's own browser download is not used.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from .test_site import MISSING, mkdocs_build, small_site

CHROMIUM = os.environ.get("INTERSPACE_CHROMIUM") or next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)
ABSENT = [
    *MISSING,
    *([] if importlib.util.find_spec("playwright") else ["playwright (pip install playwright)"]),
    *([] if CHROMIUM else ["chromium (apt-get install chromium, or INTERSPACE_CHROMIUM)"]),
]
pytestmark = pytest.mark.skipif(bool(ABSENT), reason=f"not installed: {ABSENT}")

PAGE = "# Home\n\nInterspace pruning keeps filters adaptive.\n"


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format, *args) -> None:  # no request lines in the test output
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A small site built with our mkdocs.yml (theme, plugins, search)."""
    tmp = tmp_path_factory.mktemp("search")
    proc = mkdocs_build(small_site(tmp, PAGE), tmp / "site")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp / "site" / "search" / "search_index.json").is_file()
    return tmp / "site"


@pytest.fixture
def served(site) -> Iterator[str]:
    """The site over http on a free local port, as ``python -m http.server`` serves it."""
    handler = functools.partial(_Quiet, directory=str(site))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def _search(url: str, query: str, wait_ms: int) -> str:
    """Open ``url``, type ``query`` into the search box as a reader would (the ``s`` key
    opens it), and return what the result line says after up to ``wait_ms``."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(url)
            meta = page.locator(".md-search-result__meta")
            try:  # the worker has loaded the index when the line stops saying so
                page.wait_for_function(
                    "el => !el.textContent.includes('Initializing')",
                    arg=meta.element_handle(),
                    timeout=wait_ms,
                )
            except PlaywrightTimeout:
                return meta.inner_text().strip()
            page.keyboard.press("s")
            page.keyboard.type(query)
            page.wait_for_function(
                "el => /matching|No matching/.test(el.textContent)",
                arg=meta.element_handle(),
                timeout=wait_ms,
            )
            return meta.inner_text().strip()
        finally:
            browser.close()


def test_search_finds_a_page_when_the_site_is_served(served):
    assert _search(served, "adaptive", 20_000) == "1 matching document"


def test_search_never_starts_from_file_urls(site):
    """The limitation docs/index.md states: if this fails, file:// search works now, and
    that sentence should go."""
    said = _search((site / "index.html").as_uri(), "adaptive", 4_000)
    assert said == "Initializing search"
