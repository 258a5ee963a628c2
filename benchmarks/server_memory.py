"""The Streamlit server's resident memory (RSS) on every page and after a training run, in a browser.

Serves the app (``facecore.testing.serve_app``) against a copy of the sample dataset, opens every page in
headless Chromium (the Evaluate page also evaluates its default detectors, the built-in BlazeFace and
Haar), then starts a training from the Train page (the default, BlazeFace, for ``--epochs`` epochs)
and waits for "Done in". Prints the server's RSS after each step (settled: it moved less than 5 MiB for
3 s), its peak (VmHWM), and whether it ever mapped a TensorFlow library (training runs in a worker
process, ``facecore.jobs.ProcessJob``; the target is <= 400 MB everywhere, TensorFlow never mapped).

    python -m benchmarks.server_memory             # one epoch
    python -m benchmarks.server_memory --epochs 2 --backbone tinycnn
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = [("home", ""), ("Collect & Label", "Collect_and_Label"), ("Augment", "Augment"), ("Train", "Train"),
         ("Evaluate", "Evaluate"), ("Video", "Video"), ("Webcam", "Webcam"), ("Recognize", "Recognize")]


def tensorflow_mapped(pid: int) -> bool:
    return any("libtensorflow" in line for line in Path(f"/proc/{pid}/maps").read_text().splitlines())


def idle(page, timeout_ms: int = 120_000) -> None:
    """Wait until Streamlit finished the current run (its 'Running...' status widget is gone)."""
    page.wait_for_timeout(500)
    page.wait_for_function("!document.querySelector('[data-testid=stStatusWidget]')", timeout=timeout_ms)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--backbone", default="blazeface", help="the Train page's Model (default: its default)")
    args = ap.parse_args(argv)

    from playwright.sync_api import sync_playwright

    from facecore.testing import BROWSER_ARGS, CHROMIUM, rss_mb, serve_app, settled_rss_mb

    rows: list[tuple[str, float, float, bool]] = []
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        tmp = Path(tmp)
        data, models = tmp / "data", tmp / "models"
        shutil.copytree(ROOT / "data" / "sample", data / "workspace" / "faces")
        shutil.copytree(ROOT / "data" / "sample", data / "sample")
        models.mkdir()
        with serve_app(data, models, tmp, with_process=True) as (url, proc), sync_playwright() as p:
            pid = proc.pid

            def record(state: str) -> None:
                now = settled_rss_mb(pid)
                rows.append((state, now, rss_mb(pid)[1], tensorflow_mapped(pid)))
                print(f"  {state:<42} {now:6.0f} MiB (peak so far {rows[-1][2]:.0f} MiB)"
                      f"{'  TensorFlow mapped' if rows[-1][3] else ''}", flush=True)

            print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
            record("server started")
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            page.set_default_timeout(300_000)
            for title, path in PAGES:
                page.goto(f"{url}/{path}?dataset=faces")
                page.locator("[data-testid=stMain]").wait_for()
                idle(page)
                record(f"{title} page open")
                if path == "Evaluate":
                    page.get_by_role("button", name="Evaluate", exact=True).click()
                    page.get_by_text("Photos, worst first").wait_for()
                    idle(page)
                    record("Evaluate: blazeface + haar evaluated")
            page.goto(f"{url}/Train?dataset=faces")
            page.get_by_role("button", name="Start training").wait_for()
            idle(page)
            if args.backbone != "blazeface":
                page.locator("[data-testid=stSelectbox]").filter(has_text="Model").first.click()
                page.get_by_role("option", name=args.backbone).click()
                idle(page)
            epochs = page.get_by_role("spinbutton", name="Epochs", exact=True)
            epochs.fill(str(args.epochs))
            epochs.press("Enter")
            idle(page)
            t0 = time.monotonic()
            page.get_by_role("button", name="Start training").click()
            page.get_by_text("Done in").wait_for(timeout=1_800_000)
            print(f"  training ({args.backbone}, {args.epochs} epoch(s)) done in {time.monotonic() - t0:.0f} s")
            idle(page)
            record("Train page, after a training run")
            for title, path in PAGES:
                page.goto(f"{url}/{path}?dataset=faces")
                page.locator("[data-testid=stMain]").wait_for()
                idle(page)
            record("every page again, after the training")
            browser.close()
    worst = max(r[1] for r in rows)
    peak = max(r[2] for r in rows)
    mapped = any(r[3] for r in rows)
    print(f"\nlargest settled RSS {worst:.0f} MiB, peak {peak:.0f} MiB "
          f"({'meets' if peak <= 400 else 'MISSES'} the 400 MB target); TensorFlow "
          f"{'WAS' if mapped else 'never'} mapped in the server")
    return 0 if peak <= 400 and not mapped else 1


if __name__ == "__main__":
    sys.exit(main())
