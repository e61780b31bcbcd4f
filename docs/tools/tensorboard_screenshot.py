"""Screenshot a TensorBoard view of an SP-vs-IP comparison, in headless Chromium.

    interspace compare --epochs 10 --seeds 0 1 2 --no-dense --out runs/tb-demo \\
        --log tensorboard --log-every 5
    python docs/tools/tensorboard_screenshot.py runs/tb-demo docs/img/tensorboard_sp_vs_ip.png

Starts ``tensorboard --logdir LOGDIR`` on a free local port, opens the Time Series tab
filtered to the test accuracy and the per-step loss with Playwright (``pip install
playwright``) driving an installed Chromium (``--chromium``, default: the first of
chromium/chromium-browser/google-chrome on the PATH: nothing is downloaded), and saves a
PNG. ``forceSVG`` draws the charts without WebGL, which headless Chromium lacks.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

VIEW = "?forceSVG=true&darkMode=false&smoothing=0&runFilter={runs}&tagFilter={tags}#timeseries"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, seconds: float = 60) -> None:
    end = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > end:
                msg = f"tensorboard did not answer at {url} within {seconds:.0f} s"
                raise SystemExit(msg) from None
            time.sleep(0.5)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("logdir", type=Path)
    p.add_argument("png", type=Path)
    p.add_argument("--tags", default="^(test_acc|step/loss)$", help="tag filter (regex)")
    p.add_argument("--runs", default="seed", help="run filter (regex)")
    p.add_argument("--chromium", default=None, help="the browser binary")
    args = p.parse_args()
    browser = args.chromium or next(
        (b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None
    )
    if browser is None:
        raise SystemExit("no Chromium found: apt-get install chromium, or pass --chromium PATH")
    from urllib.parse import quote

    from playwright.sync_api import sync_playwright

    port = free_port()
    tb = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tensorboard.main",
            "--logdir",
            str(args.logdir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}/"
        wait_for(base + "data/runs")
        url = base + VIEW.format(runs=quote(args.runs), tags=quote(args.tags, safe=""))
        with sync_playwright() as pw:
            b = pw.chromium.launch(
                executable_path=shutil.which(browser) or browser,
                args=["--no-sandbox", "--disable-gpu"],
            )
            page = b.new_page(viewport={"width": 1280, "height": 640})
            page.goto(url)
            page.get_by_label("Close side pane").click()  # the settings pane: more room
            page.get_by_text("Tags matching filter").wait_for(timeout=30000)  # the cards
            page.wait_for_timeout(6000)  # their series are fetched and drawn
            args.png.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.png))
            b.close()
    finally:
        tb.terminate()
        tb.wait(timeout=30)
    print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
