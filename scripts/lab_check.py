"""Run the notebooks in a real JupyterLab, in headless Chromium, and screenshot each one.

``make lab-check`` (or ``.venv/bin/python scripts/lab_check.py [01 05 ...]``):

1. copies ``notebooks/`` (the ``.ipynb`` files and ``_nbsetup.py``) and ``sweeps/`` into a
   temporary folder, so that JupyterLab's autosave never writes outputs into the repository;
2. starts JupyterLab there, headless, on 127.0.0.1 with a random token (``--allow-root``, an
   empty settings and workspace folder, news fetching off), with
   ``THREEREGIME_NOTEBOOK_TINY=1`` in the kernels' environment (the tiny setting, selected the
   way ``tests/test_notebooks.py`` selects it; ``--full RUNS``: the full setting, sweeps in
   ``RUNS``) and without ``MPLBACKEND`` (so that the
   kernel uses the inline backend, as a user's would);
3. opens every notebook in headless Chromium through selenium (the system ``chromium`` and
   ``chromedriver``: Debian's packages), runs all cells (``notebook:run-all-cells``), waits
   until the kernel is idle and no cell is queued (bounded by ``--timeout`` per notebook);
4. fails a notebook on any cell that did not run, any error output, any stderr output holding
   "Traceback", "Error" or "Warning" (tqdm's "IProgress not found" included), any widget
   that could not be displayed; notes (without failing) outputs longer than ``--long-lines``;
5. saves a full-page screenshot of each notebook at full size under ``--full-out`` (default
   ``results/lab_check/``, not tracked), and one with the code cells collapsed (what a reader
   sees: markdown and outputs), downscaled and palette-quantized, under ``--out`` (default
   ``docs/lab_screenshots/``, kept small for git);
6. stops JupyterLab and the browser whatever happens.

Exit status 0 when every notebook passed, 1 otherwise, with one line per notebook. Needs the
``lab`` extra, ``selenium`` and Chromium (see docs/lab_check.md).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
BAD_WORDS = ("Traceback", "Error", "Warning", "IProgress not found")

# JavaScript run in the page; `window.jupyterapp` exists with LabApp.expose_app_in_browser.
_JS_STATE = """
const app = window.jupyterapp;
if (!app || !app.shell) { return {ready: false, why: 'no app'}; }
const nb = app.shell.currentWidget;
if (!nb || !nb.sessionContext || !nb.content) { return {ready: false, why: 'no notebook'}; }
const kernel = nb.sessionContext.session && nb.sessionContext.session.kernel;
const prompts = Array.from(nb.node.querySelectorAll('.jp-InputPrompt')).map(p => p.textContent);
const code = nb.content.widgets.filter(c => c.model.type === 'code');
return {ready: nb.context.isReady && !!kernel, status: kernel ? kernel.status : 'none',
        busy: prompts.filter(t => t.includes('*')).length,
        notrun: code.filter(c => c.model.executionCount === null).length,
        ncode: code.length};
"""

_JS_OUTPUTS = """
const nb = window.jupyterapp.shell.currentWidget;
const out = [];
nb.content.widgets.forEach((cell, i) => {
  cell.node.querySelectorAll('.jp-OutputArea-output').forEach(o => {
    out.push({cell: i, mime: o.getAttribute('data-mime-type') || '',
              text: o.innerText || ''});
  });
});
return out;
"""

# the kernel is shut down and the (temporary) notebook marked clean: no "leave page?" prompt
_JS_CLOSE = """
const nb = window.jupyterapp && window.jupyterapp.shell.currentWidget;
if (nb && nb.context) { nb.context.model.dirty = false; }
if (nb && nb.sessionContext) { nb.sessionContext.shutdown(); }
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: shipped result files the notebooks read (relative to the repository)
NOTEBOOK_DATA = ("validation/corpus_v2/regret_scores.csv",)


def _copy_tree(dest: Path, nb_dir: Path) -> None:
    """notebooks/*.ipynb + _nbsetup.py, sweeps/ and :data:`NOTEBOOK_DATA` into ``dest`` (outputs
    never reach git)."""
    (dest / "notebooks").mkdir(parents=True)
    for p in [*nb_dir.glob("[0-9][0-9]_*.ipynb"), NB_DIR / "_nbsetup.py"]:
        shutil.copy2(p, dest / "notebooks" / p.name)
    shutil.copytree(ROOT / "sweeps", dest / "sweeps")
    for rel in NOTEBOOK_DATA:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, dest / rel)
    settings = dest / ".lab" / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    # no "would you like to receive Jupyter news?" toast over the screenshots
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))


def start_lab(tmp: Path, port: int, token: str, log, full_runs: Path | None = None
              ) -> subprocess.Popen:
    """JupyterLab in ``tmp`` (headless, 127.0.0.1, token, --allow-root); returns the process.

    ``full_runs``: the notebooks' full setting (no ``THREEREGIME_NOTEBOOK_TINY``), their sweeps
    in that folder (``THREEREGIME_NOTEBOOK_RUNS``; finished stages found there are reused)."""
    env = dict(os.environ, THREEREGIME_NOTEBOOK_TINY="1", OMP_NUM_THREADS="1",
               PYDEVD_DISABLE_FILE_VALIDATION="1",
               JUPYTERLAB_SETTINGS_DIR=str(tmp / ".lab" / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp / ".lab" / "workspaces"),
               JUPYTER_RUNTIME_DIR=str(tmp / ".lab" / "runtime"))
    env.pop("MPLBACKEND", None)              # the Makefile exports Agg; a user's kernel is inline
    env.pop("THREEREGIME_NOTEBOOK_RUNS", None)
    if full_runs is not None:
        env.pop("THREEREGIME_NOTEBOOK_TINY")
        env["THREEREGIME_NOTEBOOK_RUNS"] = str(full_runs)
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
           "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp}",
           "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=",
           "--ServerApp.disable_check_xsrf=False"]
    proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}/api/status?token={token}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with status {proc.returncode}; see its log")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("JupyterLab did not answer within 120 s; see its log")


def stop_lab(proc: subprocess.Popen | None) -> None:
    """SIGTERM the server's process group (kernels included), SIGKILL after 15 s."""
    if proc is None or proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def start_browser(width: int):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              f"--window-size={width},1000", "--hide-scrollbars", "--force-device-scale-factor=1"):
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)


def _wait(driver, pred, timeout: float, what: str, poll: float = 1.0):
    deadline = time.monotonic() + timeout
    state = None
    while time.monotonic() < deadline:
        state = driver.execute_script(_JS_STATE)
        if pred(state):
            return state
        time.sleep(poll)
    raise TimeoutError(f"{what} not reached within {timeout:.0f} s (last state {state})")


def screenshot(driver, width: int) -> bytes:
    """The whole notebook: the viewport is made as tall as the notebook's scrolled content."""
    driver.execute_script("window.jupyterapp.shell.mode = 'single-document';"
                          "window.jupyterapp.shell.collapseLeft();"
                          "window.jupyterapp.shell.collapseRight();")
    time.sleep(1.0)
    h = 0
    for _ in range(4):      # cells rendered once on screen grow the notebook: measure again
        grown = int(min(max(driver.execute_script("""
            const nb = window.jupyterapp.shell.currentWidget;
            const sc = nb.node.querySelector('.jp-WindowedPanel-outer') || nb.content.node;
            const top = sc.getBoundingClientRect().top;
            return Math.ceil(top + sc.scrollHeight + 40);"""), 800), 16000))
        if grown <= h:
            break
        h = grown
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": h, "deviceScaleFactor": 1, "mobile": False})
        time.sleep(1.5)
    driver.execute_script("""
        const nb = window.jupyterapp.shell.currentWidget;
        nb.content.activeCellIndex = 0;
        const sc = nb.node.querySelector('.jp-WindowedPanel-outer') || nb.content.node;
        sc.scrollTop = 0;""")
    time.sleep(2.0)                      # re-layout; images of off-screen cells decoded
    bottom = driver.execute_script("""
        const cells = window.jupyterapp.shell.currentWidget.content.widgets;
        return Math.ceil(cells[cells.length - 1].node.getBoundingClientRect().bottom + 20);""")
    png = driver.get_screenshot_as_png()
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    return crop_png(png, int(bottom))


def crop_png(png: bytes, bottom: int) -> bytes:
    """The screenshot down to ``bottom`` pixels (the blank scroll-past-end area cut off)."""
    from PIL import Image

    im = Image.open(io.BytesIO(png))
    if 0 < bottom < im.height:
        im = im.crop((0, 0, im.width, bottom))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def shrink(png: bytes, width: int, colours: int) -> bytes:
    """Downscale to ``width`` pixels and quantize to ``colours`` colours (small PNG in git)."""
    from PIL import Image

    im = Image.open(io.BytesIO(png)).convert("RGB")
    if im.width > width:
        im = im.resize((width, round(im.height * width / im.width)), Image.LANCZOS)
    im = im.quantize(colors=colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def problems_of(outputs: list[dict], long_lines: int) -> tuple[list[str], list[str]]:
    """(failures, notes) from the rendered outputs of one notebook."""
    fails, notes = [], []
    for o in outputs:
        text, cell = o["text"], o["cell"]
        first = next((ln for ln in text.splitlines() if any(w in ln for w in BAD_WORDS)),
                     text.strip().splitlines()[0] if text.strip() else "")
        if "stderr" in o["mime"] and any(w in text for w in BAD_WORDS):
            fails.append(f"cell {cell}: {first.strip()[:160]}")
        elif "Error displaying widget" in text or "IProgress not found" in text:
            fails.append(f"cell {cell}: {first.strip()[:160]}")
        n = len(text.splitlines())
        if n > long_lines:
            notes.append(f"cell {cell}: output of {n} lines")
    return fails, notes


def check_notebook(driver, base: str, token: str, name: str, timeout: float, width: int,
                   full_out: Path, out: Path, shrink_width: int, long_lines: int) -> str:
    """Open, run all, wait, inspect, screenshot one notebook; return '' or the failure."""
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    driver.get(f"{base}/lab/tree/notebooks/{name}.ipynb?reset&token={token}")
    _wait(driver, lambda s: s.get("ready") and s["status"] == "idle", 120,
          "notebook open with an idle kernel")
    t0 = time.monotonic()
    driver.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells');")
    time.sleep(2.0)
    quiet = {"n": 0}

    def finished(s):       # idle and nothing queued, three polls in a row
        quiet["n"] = quiet["n"] + 1 if (s["status"] == "idle" and s["busy"] == 0) else 0
        return quiet["n"] >= 3

    try:
        state = _wait(driver, finished, timeout, "kernel idle after Run All")
        took = f"{time.monotonic() - t0:.0f} s"
        fails, notes = problems_of(driver.execute_script(_JS_OUTPUTS), long_lines)
        if state["notrun"]:
            fails.append(f"{state['notrun']} of {state['ncode']} code cells did not run")
    except TimeoutError as e:
        took, fails, notes = f">{timeout:.0f} s", [str(e)], []
    (full_out / f"{name}.png").write_bytes(screenshot(driver, width))
    # the small one in git: what a reader sees (markdown and outputs), code cells collapsed
    driver.execute_script("window.jupyterapp.commands.execute('notebook:hide-all-cell-code');")
    (out / f"{name}.png").write_bytes(shrink(screenshot(driver, width), shrink_width, 32))
    for n in notes:
        print(f"  note {name}: {n}")
    if fails:
        for f in fails[1:]:
            print(f"  also {name}: {f}")
        return f"{fails[0]} ({took}; {len(fails)} problem(s))"
    return f"ok ({took})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("notebooks", nargs="*", help="notebook names or number prefixes "
                   "(default: all notebooks/NN_*.ipynb)")
    p.add_argument("--timeout", type=float, default=600, help="seconds per notebook (600)")
    p.add_argument("--width", type=int, default=1280, help="browser width in pixels (1280)")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "lab_screenshots",
                   help="folder of the small screenshots (docs/lab_screenshots)")
    p.add_argument("--full-out", type=Path, default=ROOT / "results" / "lab_check",
                   help="folder of the full-size screenshots and the server log")
    p.add_argument("--shrink-width", type=int, default=560,
                   help="width of the small screenshots, code hidden (560)")
    p.add_argument("--long-lines", type=int, default=40,
                   help="note outputs longer than this many lines (40)")
    p.add_argument("--notebook-dir", type=Path, default=NB_DIR,
                   help="folder of the NN_*.ipynb notebooks (default: notebooks/)")
    p.add_argument("--full", metavar="RUNS", type=Path, default=None,
                   help="the full setting instead of the tiny one, the notebooks' sweeps in "
                        "the folder RUNS (reused when already run there)")
    args = p.parse_args(argv)

    names = sorted(n.stem for n in args.notebook_dir.glob("[0-9][0-9]_*.ipynb"))
    if args.notebooks:
        chosen = [n for n in names if any(n == a or n.startswith(a) for a in args.notebooks)]
        if not chosen:
            p.error(f"no notebook matches {args.notebooks}; have {names}")
        names = chosen
    for exe in (CHROMIUM, CHROMEDRIVER):
        if not Path(exe).exists():
            p.error(f"{exe} not found: apt-get install chromium chromium-driver")
    args.out.mkdir(parents=True, exist_ok=True)
    args.full_out.mkdir(parents=True, exist_ok=True)

    results: dict[str, str] = {}
    proc = driver = None
    token, port = secrets.token_hex(16), _free_port()
    with tempfile.TemporaryDirectory(prefix="threeregime-lab-") as tmp, \
            open(args.full_out / "jupyterlab.log", "w") as log:
        try:
            _copy_tree(Path(tmp), args.notebook_dir)
            proc = start_lab(Path(tmp), port, token, log, args.full)
            driver = start_browser(args.width)
            base = f"http://127.0.0.1:{port}"
            for name in names:
                try:
                    results[name] = check_notebook(
                        driver, base, token, name, args.timeout, args.width, args.full_out,
                        args.out, args.shrink_width, args.long_lines)
                except Exception as e:          # one notebook's failure is reported, not fatal
                    results[name] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
                # shut this notebook's kernel down before the next one starts
                driver.execute_script(_JS_CLOSE)
                print(f"{name}: {results[name]}", flush=True)
        except Exception as e:
            print(f"lab-check: {type(e).__name__}: {e}", file=sys.stderr)
            return 1
        finally:
            if driver is not None:
                driver.quit()
            stop_lab(proc)
    bad = [n for n, r in results.items() if not r.startswith("ok")]
    print(f"lab-check: {len(results) - len(bad)} of {len(results)} notebooks ok; screenshots "
          f"in {args.out} (full size in {args.full_out})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
