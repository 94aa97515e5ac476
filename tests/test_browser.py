"""The issue's done-when, in a real browser: JupyterLab serves 00-start-here, headless Chromium (the Debian
package, driven by Playwright from PyPI) runs every cell, switches the live panel to acks=1 and clicks
"crash leader"; the anomaly table must then show lost-write and the log picture must have changed.

Outside CI the test skips when /usr/bin/chromium or playwright is missing; with CI=true it runs or fails.
Never ``playwright install``: it downloads a browser of its own. The screenshot goes to build/browser/.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "00-start-here.ipynb"
CHROMIUM = Path("/usr/bin/chromium")
SHOTS = ROOT / "build" / "browser"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
IN_CI = os.environ.get("CI", "").lower() == "true"
LOCAL = ("127.0.0.1", "localhost", "[::1]")

pytestmark = pytest.mark.slow


def _requirements():
    """The playwright module, or a skip (a failure in CI) naming what is missing."""
    missing = []
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
        missing.append("the playwright package (pip install playwright; never `playwright install`)")
    if missing:
        message = "browser test needs " + " and ".join(missing)
        if IN_CI:
            pytest.fail(message + " (CI=true: .ci/run installs them)")
        pytest.skip(message)
    return sync_playwright


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


@pytest.fixture
def jupyterlab(tmp_path):
    """JupyterLab on 127.0.0.1 with a token, serving a copy of the notebook (autosave never touches ours), with
    settings, workspaces and runtime files in a temporary folder; stopped by its own process group."""
    root = tmp_path / "root"
    root.mkdir()
    # Without its saved outputs and widget state: what the test waits for can only come from this run.
    notebook = json.loads(NOTEBOOK.read_text())
    notebook["metadata"].pop("widgets", None)
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    (root / NOTEBOOK.name).write_text(json.dumps(notebook))
    app_settings = tmp_path / "app-settings"
    app_settings.mkdir()
    (app_settings / "overrides.json").write_text(json.dumps({
        "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False},
        "@jupyterlab/notebook-extension:tracker": {"windowingMode": "none"},
    }))
    port, token = _free_port(), secrets.token_hex(16)
    command = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
               f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
               f"--LabApp.app_settings_dir={app_settings}", f"--LabApp.user_settings_dir={tmp_path / 'user'}",
               f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp_path / "config"), JUPYTER_RUNTIME_DIR=str(tmp_path / "rt"),
               PYTHONUNBUFFERED="1")
    env.pop("MPLBACKEND", None)
    log = open(tmp_path / "jupyterlab.log", "w")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                              cwd=root, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                _get(f"{base}/api/status?token={token}")
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("JupyterLab did not start:\n" + (tmp_path / "jupyterlab.log").read_text())
                time.sleep(0.3)
        yield base, token
    finally:
        try:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(server.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        log.close()


def _wait_for_kernel(base, token, page, timeout=90):
    """Idle *and* connected: a fresh server can report an idle kernel before the page's websocket is up, and
    "Run All" sent then does nothing."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kernels = _get(f"{base}/api/kernels?token={token}")
        ready = [k for k in kernels if k.get("execution_state") == "idle" and k.get("connections", 0) >= 1]
        indicator = page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")
        if ready and indicator.count():
            return
        page.wait_for_timeout(300)      # not time.sleep: the page's routed requests wait on Playwright's loop
    raise AssertionError(f"the kernel never became idle and connected: {kernels}")


def test_learner_crashes_the_leader_and_sees_lost_writes(jupyterlab):
    sync_playwright = _requirements()
    base, token = jupyterlab
    SHOTS.mkdir(parents=True, exist_ok=True)
    blocked = []

    def only_local(route):
        host = route.request.url.split("/")[2].rsplit(":", 1)[0] if "://" in route.request.url else ""
        if route.request.url.startswith(("data:", "blob:")) or host in LOCAL:
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.route("**/*", only_local)
            page.goto(f"{base}/lab/tree/{NOTEBOOK.name}?token={token}", wait_until="domcontentloaded")
            shot = SHOTS / "00-start-here-failed.png"
            page.locator(".jp-Notebook").first.wait_for(timeout=60_000)
            _wait_for_kernel(base, token, page)

            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
            page.get_by_text("✅ 2. right").wait_for(timeout=180_000)      # the last cell has run

            panel = page.locator(".widget-vbox:has(button:has-text('crash leader'))").last
            acks = panel.locator(".widget-dropdown:has(label:text-is('acks')) select")
            acks.wait_for(timeout=60_000)
            now_image = panel.locator("img.widget-image").first
            now_image.wait_for(timeout=60_000)
            before = now_image.get_attribute("src")

            acks.select_option("1")
            page.wait_for_function(
                "() => [...document.querySelectorAll('.widget-html pre')].some(e => e.textContent.includes(\"'acks': '1'\"))",
                timeout=60_000)
            panel.get_by_role("button", name="crash leader").click()
            table = panel.locator(".edsim-anomaly-table")
            table.wait_for(timeout=60_000)
            assert "lost-write" in table.inner_text()
            row = table.locator("tr:has(th:text-is('lost-write'))")
            assert int(row.locator("td").first.inner_text()) > 0
            after = now_image.get_attribute("src")
            assert after and after != before, "the log picture did not change"
            assert "t = 1.500 s" in panel.inner_text()
            end_image = panel.locator("img.widget-image").nth(1)      # the logs at the end: the red row
            assert (end_image.get_attribute("src") or "").startswith(("blob:", "data:"))
            end_image.screenshot(path=str(SHOTS / "00-start-here-logs-at-the-end.png"))
            panel.scroll_into_view_if_needed()
            page.screenshot(path=str(SHOTS / "00-start-here-crash-leader.png"), full_page=False)
            panel.screenshot(path=str(SHOTS / "00-start-here-panel.png"))
        except Exception:
            page.screenshot(path=str(shot))
            raise
        finally:
            browser.close()
    assert all("127.0.0.1" not in url for url in blocked)
