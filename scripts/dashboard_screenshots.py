"""Take the screenshots of ``docs/dashboard.md`` from a real link, nodes and runs.

Starts ``corolla link --dashboard-address`` (without accounts) and four ``corolla
node`` processes on 127.0.0.1, one of them with a partition the app cannot load (so that
the participation map shows failures), runs ``examples/quickstart-numpy`` twice with two
learning rates, and saves each page of the dashboard, as Debian's Chromium draws it, into
``docs/images/dashboard-*.png``. Everything it started is stopped when it ends.

Usage: python scripts/dashboard_screenshots.py [--output DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

from corolla.runtime import ControlClient
from corolla.transport import run_pb2

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "examples" / "quickstart-numpy"
ROUNDS = 8


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(children: list[subprocess.Popen[bytes]], work: Path, name: str, *args: str) -> None:
    log = open(work / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
    env = dict(os.environ, COROLLA_HOME=str(work / "home"))
    children.append(
        subprocess.Popen(
            [sys.executable, "-m", "corolla", *args], stdout=log, stderr=subprocess.STDOUT, env=env
        )
    )
    log.close()


def _wait(condition: object, what: str, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if condition():  # type: ignore[operator]
                return
        except ConnectionError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{what} did not happen within {seconds} s")


def _shoot(page: Page, url: str, ready: str, path: Path, *, full: bool = True) -> None:
    page.goto(url)
    page.wait_for_selector(ready, timeout=30_000)
    page.wait_for_timeout(500)
    page.screenshot(path=str(path), full_page=full)
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "images")
    args = parser.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("Debian's Chromium is needed: sudo apt-get install -y chromium")
    args.output.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="corolla-screenshots-"))
    fleet, control, web = _free_port(), _free_port(), _free_port()
    children: list[subprocess.Popen[bytes]] = []
    try:
        _start(
            children, work, "link", "link", "--state", str(work / "link"),
            "--fleet-address", f"127.0.0.1:{fleet}", "--control-address", f"127.0.0.1:{control}",
            "--dashboard-address", f"127.0.0.1:{web}",
        )  # fmt: skip
        for i in range(4):
            partition = i if i < 3 else 99  # the fourth node's partition does not exist
            _start(
                children, work, f"node{i}", "node", "--link", f"127.0.0.1:{fleet}",
                "--state", str(work / f"node{i}"), "--attributes", f"site=site-{i}",
                "--node-config", f"partition-id={partition}", "num-partitions=3",
            )  # fmt: skip
        with ControlClient(f"127.0.0.1:{control}") as client:
            _wait(lambda: len(client.list_nodes()) == 4, "four nodes online")
            runs = []
            for rate in (0.5, 0.1):
                config = {
                    "num-server-rounds": ROUNDS,
                    "fraction-train": 1.0,
                    "fraction-evaluate": 1.0,
                    "learning-rate": rate,
                }
                run = client.submit(APP, config)
                runs.append(run.run_id)
                _wait(
                    lambda r=run.run_id: (
                        client.get_run(r).status
                        in (run_pb2.RUN_STATUS_FINISHED, run_pb2.RUN_STATUS_FAILED)
                    ),
                    f"run {run.run_id} ending",
                    seconds=300,
                )
        url = f"http://127.0.0.1:{web}/"
        with sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=chromium)
            page = browser.new_page(viewport={"width": 1360, "height": 900})
            out = args.output
            _shoot(page, f"{url}#/runs", "table.runs tbody tr", out / "dashboard-runs.png")
            page.goto(f"{url}#/runs/{runs[0]}")
            page.wait_for_selector("td.cell.failed", timeout=30_000)
            page.click("td.cell.failed >> nth=0")
            page.wait_for_selector("#failure-details ul.failures li")
            page.wait_for_timeout(300)
            page.screenshot(path=str(out / "dashboard-run.png"), full_page=True)
            print(f"wrote {out / 'dashboard-run.png'}")
            _shoot(page, f"{url}#/nodes", "table.nodes tbody tr", out / "dashboard-nodes.png")
            _shoot(
                page,
                f"{url}#/compare?runs={runs[0]},{runs[1]}",
                "table.compare",
                out / "dashboard-compare.png",
            )
            page.goto(f"{url}#/federation")
            page.wait_for_timeout(2500)  # a few samples of the traffic
            _shoot(page, f"{url}#/federation", "svg.chart", out / "dashboard-federation.png")
            browser.close()
    finally:
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
