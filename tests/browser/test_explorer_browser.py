"""Notebook 03's explorer in a real browser: JupyterLab on 127.0.0.1, driven by Playwright with
the system's Chromium (``make test-browser``; not part of ``make test``).

The test copies notebook 03 into a temporary folder (JupyterLab autosaves; the repository's copy
is never touched), opens it, runs all cells from the Run menu, then moves the explorer's class
slider (``top-k rank``) with real key presses on its handle and checks, each time, that the
picture changes. For every press it records the latency from the ``keydown`` event to the new
picture decoded and the next frame painted (``performance.now()`` in the page); those go to
``benchmarks/results/browser_explorer.json`` and are printed, never asserted (a loaded machine
may take any time). Last, it restarts the kernel from the Kernel menu and checks what the page
then shows: the explorer must say "rerun the cell".

Environment: ``CHROMIUM`` (path of the browser; default: ``chromium`` or ``chromium-browser``
on PATH), ``GAPCAM_BROWSER_PRESSES`` (key presses timed, default 20), ``GAPCAM_BROWSER_RESULTS``
(the JSON's path).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

playwright_sync = pytest.importorskip("playwright.sync_api")

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = Path(os.environ.get("GAPCAM_BROWSER_NOTEBOOK",
                             ROOT / "notebooks/03_class_activation_maps.ipynb"))
RESULTS = Path(os.environ.get("GAPCAM_BROWSER_RESULTS",
                              ROOT / "benchmarks/results/browser_explorer.json"))
PRESSES = int(os.environ.get("GAPCAM_BROWSER_PRESSES", "20"))
#: Chromium as root needs --no-sandbox; the rest keeps it off the (closed) network.
CHROMIUM_ARGS = ["--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic",
                 "--disable-dev-shm-usage"]
RUN_ALL_TIMEOUT_S = 900
RESTART_SENTENCE = "rerun the cell"

#: Measures one update in the page: resolves with the time from the handle's keydown to the new
#: picture decoded and painted (the next animation frame), and a digest of the new picture.
WATCH_PICTURE = """
([handle, img, timeoutMs]) => {
  window.__picture = new Promise((resolve) => {
    let keydown = null;
    const before = img.getAttribute('src');
    handle.addEventListener('keydown', () => { keydown = performance.now(); },
                            {capture: true, once: true});
    const done = (result) => { observer.disconnect(); clearTimeout(timer); resolve(result); };
    const observer = new MutationObserver(async () => {
      const src = img.getAttribute('src');
      if (src === before) return;
      observer.disconnect();
      try { await img.decode(); } catch (error) {}
      const bytes = new Uint8Array(await (await fetch(src)).arrayBuffer());
      const digest = Array.from(new Uint8Array(await crypto.subtle.digest('SHA-256', bytes)))
        .map((b) => b.toString(16).padStart(2, '0')).join('');
      requestAnimationFrame(() => done({changed: true, keydown,
                                       painted: performance.now(), digest}));
    });
    observer.observe(img, {attributes: true, attributeFilter: ['src']});
    const timer = setTimeout(() => done({changed: false, keydown, painted: null}), timeoutMs);
  });
}
"""

DIGEST = """
async (img) => {
  const bytes = new Uint8Array(await (await fetch(img.getAttribute('src'))).arrayBuffer());
  return Array.from(new Uint8Array(await crypto.subtle.digest('SHA-256', bytes)))
    .map((b) => b.toString(16).padStart(2, '0')).join('');
}
"""

#: Where the picture and the class slider's handle are, and the part of the notebook on screen.
LAYOUT = """
([picture, handle]) => {
  const box = (e) => { const b = e.getBoundingClientRect();
    return {left: b.left, top: b.top, right: b.right, bottom: b.bottom}; };
  const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook');
  const shown = panel.getBoundingClientRect();
  return {picture: box(picture), handle: box(handle),
          shown: {left: Math.max(shown.left, 0), top: Math.max(shown.top, 0),
                  right: Math.min(shown.right, window.innerWidth),
                  bottom: Math.min(shown.bottom, window.innerHeight)}};
}
"""
#: A common laptop screen (controls and picture must be visible together).
LAPTOP = {"width": 1366, "height": 768}


def chromium_path() -> str:
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which(
        "chromium-browser")
    if not path:
        pytest.fail("no Chromium: apt-get install chromium (Debian/Ubuntu, as root), or set "
                    "CHROMIUM=/path/to/chromium; make test-browser installs it when run as root")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def jupyterlab(tmp_path_factory):
    """A JupyterLab server on 127.0.0.1 serving a copy of notebook 03; yields its base URL and
    token."""
    folder = tmp_path_factory.mktemp("lab")
    # Without the committed outputs, so that a numbered prompt means "ran in this browser".
    notebook = json.loads(NOTEBOOK.read_text())
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    (folder / NOTEBOOK.name).write_text(json.dumps(notebook, indent=1))
    # User settings of this server only: start the notebook's kernel without asking, render
    # every cell (JupyterLab 4 skips the cells out of view by default, the explorer among them),
    # and fetch no news.
    settings = folder / ".lab-settings" / "@jupyterlab"
    for extension, plugin, values in [
        ("notebook-extension", "tracker", {"autoStartDefaultKernel": True,
                                           "windowingMode": "none"}),
        ("apputils-extension", "notification", {"fetchNews": "false",
                                                "checkForUpdates": False}),
    ]:
        (settings / extension).mkdir(parents=True, exist_ok=True)
        (settings / extension / f"{plugin}.jupyterlab-settings").write_text(json.dumps(values))
    port, token = free_port(), uuid.uuid4().hex
    env = {key: value for key, value in os.environ.items() if key != "MPLBACKEND"}
    env.update(GAPCAM_OFFLINE="1", JUPYTER_CONFIG_DIR=str(folder / ".jupyter-config"),
               JUPYTERLAB_SETTINGS_DIR=str(folder / ".lab-settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(folder / ".lab-workspaces"))
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1",
               f"--port={port}", f"--IdentityProvider.token={token}",
               f"--ServerApp.root_dir={folder}", "--ServerApp.open_browser=False",
               "--LabApp.news_url=None",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if hasattr(os, "getuid") and os.getuid() == 0:
        command.append("--allow-root")
    log = open(folder / "jupyterlab.log", "w")
    server = subprocess.Popen(command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=5):
                break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                log.close()
                pytest.fail("JupyterLab did not start:\n" + (folder / "jupyterlab.log").read_text())
            time.sleep(0.5)
    yield {"url": url, "token": token, "folder": folder}
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
    log.close()


@pytest.fixture(scope="module")
def page(jupyterlab):
    args = list(CHROMIUM_ARGS)
    if hasattr(os, "getuid") and os.getuid() == 0:
        args.append("--no-sandbox")
    with playwright_sync.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=args,
                                             headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)
        page.goto(f"{jupyterlab['url']}/lab/tree/{NOTEBOOK.name}?token={jupyterlab['token']}")
        page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=120_000)
        wait_for_idle_kernel(page, 120)
        yield page
        browser.close()


def wait_for_idle_kernel(page, timeout_s: float) -> None:
    """Until the notebook's kernel reports idle and no cell is queued or running ([*])."""
    page.wait_for_function(
        """() => {
          const prompts = [...document.querySelectorAll('.jp-Notebook .jp-InputPrompt')];
          if (prompts.some((p) => p.textContent.includes('*'))) return false;
          const status = document.querySelector('.jp-Notebook-ExecutionIndicator');
          const label = status ? (status.getAttribute('data-status') || status.title || '') : '';
          return !label || /idle/i.test(label);
        }""", timeout=timeout_s * 1000, polling=500)


DIALOGS_SEEN: list[str] = []


def accept_dialogs(page) -> None:
    """Accept any dialog JupyterLab opened by itself (e.g. "Select Kernel" on a slow start, which
    offers the notebook's own kernel), noting its text."""
    dialog = page.locator(".jp-Dialog")
    while dialog.count() and dialog.first.is_visible():
        DIALOGS_SEEN.append(" ".join(dialog.first.inner_text().split())[:300])
        dialog.first.locator(".jp-mod-accept").first.click()
        page.wait_for_timeout(500)


def wait_for_session_kernel(jupyterlab, timeout_s: float) -> None:
    """Until the server lists the notebook's session with an idle kernel that a client (the
    page) is connected to."""
    deadline = time.monotonic() + timeout_s
    url = f"{jupyterlab['url']}/api/sessions?token={jupyterlab['token']}"
    while True:
        with urllib.request.urlopen(url, timeout=10) as response:
            sessions = json.loads(response.read())
        kernels = [s["kernel"] for s in sessions if s.get("path", "").endswith(NOTEBOOK.name)]
        if len(kernels) == 1 and kernels[0].get("execution_state") == "idle" and kernels[0].get(
                "connections", 1) >= 1:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"the notebook's kernel is not idle and connected: {sessions}")
        time.sleep(1)


def menu_command(page, menu: str, label: str) -> None:
    """Click a menu of the menu bar, then its item whose label starts with `label` (JupyterLab's
    command ids differ between versions: "runmenu:run-all", "notebook:run-all-cells")."""
    accept_dialogs(page)
    page.locator(".lm-MenuBar-item", has_text=menu).first.click()
    item = page.locator(".lm-Menu-item").filter(
        has=page.locator(".lm-Menu-itemLabel", has_text=re.compile(rf"^{re.escape(label)}")))
    item.first.click()


def explorer_parts(page):
    """The explorer's output area, the handle of its class slider and its picture."""
    slider = page.locator(".widget-slider, .widget-hslider").filter(has_text="rank").first
    try:
        slider.wait_for(timeout=60_000)
    except playwright_sync.TimeoutError:
        screenshot = RESULTS.with_suffix(".png")
        page.screenshot(path=str(screenshot), full_page=True)
        pytest.fail(f"no slider labelled 'rank' on the page: {screenshot}")
    output = page.locator(".jp-Cell").filter(has=slider).first
    # ipywidgets 8 draws its sliders with noUiSlider, 7.x with jQuery UI.
    handle = slider.locator(
        ".noUi-handle, .ui-slider-handle, [role=slider], input[type=range]").first
    picture = output.locator("img").first
    return output, handle, picture


@pytest.fixture(scope="module")
def run(page, jupyterlab):
    """Runs all cells, times the key presses, restarts the kernel; the measurements."""
    record: dict[str, Any] = {"notebook": NOTEBOOK.name, "errors": []}
    start = time.perf_counter()
    # Right after the page loads, JupyterLab may still be replacing the kernel it started, and a
    # Run All then runs nothing: wait for the server's session to have one idle, connected
    # kernel; then require a cell to finish (a numbered prompt), else restart the kernel and run
    # all once more.
    wait_for_session_kernel(jupyterlab, 120)
    numbered = ("() => [...document.querySelectorAll('.jp-Notebook .jp-InputPrompt')]"
                ".some((p) => /\\[\\d+\\]/.test(p.textContent))")
    for attempt, (menu, label) in enumerate([("Run", "Run All Cells"),
                                             ("Kernel", "Restart Kernel and Run All")]):
        menu_command(page, menu, label)
        if attempt:
            page.locator(".jp-Dialog .jp-mod-accept").first.click()
        try:
            page.wait_for_function(numbered, timeout=120_000, polling=500)
            break
        except playwright_sync.TimeoutError:
            record.setdefault("retries", []).append(f"{label}: no cell finished in 120 s")
    else:
        screenshot = RESULTS.with_suffix(".png")
        page.screenshot(path=str(screenshot))
        pytest.fail(f"no cell ran after Run All and after a restart; the page: {screenshot}")
    wait_for_idle_kernel(page, RUN_ALL_TIMEOUT_S)
    record["run_all_seconds"] = time.perf_counter() - start
    record["errors"] = page.locator(".jp-OutputArea-output[data-mime-type="
                                    "'application/vnd.jupyter.stderr']").filter(
        has_text="Traceback").all_inner_texts() + page.locator(
        ".jp-OutputArea-output").filter(has_text="Traceback (most recent call last)"
                                        ).all_inner_texts()
    try:  # collapsed inputs (the solutions) hide their prompts: show every cell's code first
        menu_command(page, "View", "Expand All Code")
    except playwright_sync.Error:
        record.setdefault("retries", []).append("no View > Expand All Code menu item")
    code_prompts = page.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()
    record["unexecuted_code_cells"] = sum(1 for p in code_prompts if not any(c.isdigit() for c in p))

    output, handle, picture = explorer_parts(page)
    output.scroll_into_view_if_needed()
    picture.wait_for(timeout=60_000)
    handle.focus()
    updates = []
    digests = [page.evaluate(DIGEST, picture.element_handle())]
    keys = (["ArrowRight"] * 4 + ["ArrowLeft"] * 4) * ((PRESSES + 7) // 8)
    for key in keys[:PRESSES]:
        page.evaluate(WATCH_PICTURE, [handle.element_handle(), picture.element_handle(), 30_000])
        handle.press(key)
        result = page.evaluate("() => window.__picture")
        latency = (result["painted"] - result["keydown"]
                   if result["changed"] and result["keydown"] is not None else None)
        updates.append({"key": key, "changed": result["changed"], "latency_ms": latency,
                        "new_picture": result.get("digest") not in (None, digests[-1])})
        if result.get("digest"):
            digests.append(result["digest"])
    record["updates"] = updates
    # On a 1366 x 768 screen, JupyterLab as it starts (file browser open): the picture scrolled
    # into view, is the class slider on screen with it?
    page.set_viewport_size(LAPTOP)
    picture.scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    record["laptop_layout"] = page.evaluate(LAYOUT, [picture.element_handle(),
                                                     handle.element_handle()])
    page.set_viewport_size({"width": 1400, "height": 1000})
    latencies = [u["latency_ms"] for u in updates if u["latency_ms"] is not None]
    record["latency_ms"] = ({"median": statistics.median(latencies), "max": max(latencies),
                             "min": min(latencies), "count": len(latencies)}
                            if latencies else None)

    # A kernel restart, as a reader does it: Kernel menu, then the dialog's Restart.
    menu_command(page, "Kernel", "Restart Kernel")
    page.locator(".jp-Dialog .jp-mod-accept").first.click()
    time.sleep(2)  # let the restart begin before waiting for idle
    wait_for_idle_kernel(page, 120)
    try:
        output.get_by_text(RESTART_SENTENCE, exact=False).first.wait_for(timeout=30_000)
    except playwright_sync.TimeoutError:
        pass
    record["after_restart_text"] = output.locator(".jp-OutputArea").first.inner_text()[:2000]
    # The slider after the restart: does the picture still change?
    after = None
    if handle.count() and picture.count():
        handle.focus()
        page.evaluate(WATCH_PICTURE, [handle.element_handle(), picture.element_handle(), 5_000])
        handle.press("ArrowRight")
        after = page.evaluate("() => window.__picture")["changed"]
    record["picture_changes_after_restart"] = after

    record.update({
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
                    "browser": page.context.browser.version},
        "command": "make test-browser",
        "dialogs_accepted": DIALOGS_SEEN,
    })
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(record, indent=2))
    if record["latency_ms"]:
        lat = record["latency_ms"]
        print(f"\nexplorer in Chromium: {lat['count']} key presses, input to new picture "
              f"median {lat['median']:.0f} ms, max {lat['max']:.0f} ms, min {lat['min']:.0f} ms; "
              f"run all {record['run_all_seconds']:.0f} s; written: {RESULTS}")
    return record


def test_all_cells_run_in_the_browser(run):
    assert not run["errors"], "a cell failed:\n" + "\n".join(run["errors"])[:3000]
    assert run["unexecuted_code_cells"] == 0


def test_every_key_press_on_the_class_slider_changes_the_picture(run):
    unchanged = [i for i, u in enumerate(run["updates"]) if not (u["changed"] and u["new_picture"])]
    assert not unchanged, f"key presses {unchanged} of {len(run['updates'])} left the picture as it was"
    assert run["latency_ms"]["count"] == len(run["updates"])  # reported, never asserted on


def test_the_picture_and_the_class_slider_fit_a_laptop_screen_together(run):
    layout = run["laptop_layout"]
    shown = layout["shown"]
    for part in ("picture", "handle"):
        box = layout[part]
        inside = (box["left"] >= shown["left"] - 1 and box["right"] <= shown["right"] + 1
                  and box["top"] >= shown["top"] - 1 and box["bottom"] <= shown["bottom"] + 1)
        size = f"{LAPTOP['width']} x {LAPTOP['height']}"
        assert inside, f"at {size} the {part} is not all on screen: {layout}"


def test_a_restarted_kernel_says_rerun_the_cell(run):
    assert RESTART_SENTENCE in run["after_restart_text"].lower(), run["after_restart_text"]
