"""A real JupyterLab (from the project's .venv) driven by Debian's headless Chromium through
selenium, with the project's `gim` kernelspec visible and nothing of the user's Jupyter setup.

Fixtures: `lab` (the server: url, token, root dir, log), `browser` (a selenium Chrome driver),
`shots` (the screenshot folder, `--shots DIR`)."""
import json
import os
import pathlib
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
VENV = REPO / ".venv"
KERNEL_NAME = "gim"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000",
    "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
# Selenium must never fetch a driver or a browser (the path is given through Service anyway).
os.environ["SE_OFFLINE"] = "true"
os.environ["SE_AVOID_STATS"] = "true"

_T0 = time.monotonic()


def pytest_addoption(parser):
    parser.addoption("--shots", default=str(REPO / "out" / "lab"),
                     help="folder for the screenshots (default: out/lab)")


def pytest_terminal_summary(terminalreporter):
    terminalreporter.write_line(f"JupyterLab browser test took {time.monotonic() - _T0:.1f} s in all")


@pytest.fixture(scope="session")
def shots(request):
    d = pathlib.Path(request.config.getoption("--shots")).resolve()
    d.mkdir(parents=True, exist_ok=True)
    for old in d.glob("*.png"):
        old.unlink()
    return d


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def lab(shots):
    spec = VENV / "share" / "jupyter" / "kernels" / KERNEL_NAME / "kernel.json"
    for need, hint in [(VENV / "bin" / "jupyter-lab", "make venv"), (spec, "make kernel-install"),
                       (pathlib.Path(CHROMIUM), "tools/ensure_chromium.sh"),
                       (pathlib.Path(CHROMEDRIVER), "tools/ensure_chromium.sh")]:
        if not need.exists():
            pytest.fail(f"{need} is missing (run `{hint}`)")
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="gim-lab-"))
    root, jup = tmp / "root", tmp / "jupyter"
    root.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "IPYTHON"))}
    env.update(
        VIRTUAL_ENV=str(VENV),
        PATH=f"{VENV / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        # The project's kernelspec (and the venv's own data) only: no user-wide kernels.
        JUPYTER_PATH=str(VENV / "share" / "jupyter"),
        JUPYTER_PLATFORM_DIRS="1",
        JUPYTER_CONFIG_DIR=str(jup / "config"),
        JUPYTER_DATA_DIR=str(jup / "data"),
        JUPYTER_RUNTIME_DIR=str(jup / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(jup / "lab-settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(jup / "lab-workspaces"),
        IPYTHONDIR=str(jup / "ipython"),
    )
    # No "get notified about Jupyter news?" toast over the notebook.
    notif = jup / "lab-settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notif.parent.mkdir(parents=True)
    notif.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    port, token = _free_port(), secrets.token_hex(24)
    log_path = shots / "jupyter-lab.log"
    log = open(log_path, "w")
    cmd = [str(VENV / "bin" / "jupyter"), "lab", "--allow-root", "--no-browser",
           "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}"]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"jupyter lab exited ({proc.returncode}):\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/api/kernelspecs?token={token}", timeout=5) as r:
                    specs = json.load(r)
                break
            except OSError:
                if time.monotonic() - t0 > 120:
                    pytest.fail(f"jupyter lab did not answer in 120 s:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.5)
        print(f"\njupyter lab {url} up after {time.monotonic() - t0:.1f} s; kernelspecs: "
              f"{sorted(specs['kernelspecs'])}")
        if KERNEL_NAME not in specs["kernelspecs"]:
            pytest.fail(f"kernelspec `{KERNEL_NAME}` not visible to jupyter lab: {sorted(specs['kernelspecs'])}")
        yield {"url": url, "token": token, "root": root, "log": log_path, "proc": proc}
    finally:
        proc.send_signal(signal.SIGTERM)  # shuts its kernels down
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="gim-lab-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={profile}"]:
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
