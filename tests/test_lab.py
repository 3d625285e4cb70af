"""`make lab`: JupyterLab at the repository root for every user, root included, with the port, address and token
asked for, and the URL printed; its command line comes from one function. The front door, in a real browser:
headless Chromium (Debian's, driven by Playwright) opens notebooks/06_report.ipynb in Lab started as `make lab`
starts it, runs every cell through Lab's Run menu and waits for the figures; nothing new appears under
notebooks/ and the committed results keep their bytes."""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from expertlib.run import lab
from expertlib.run.lab import lab_command, lab_url, main
from expertlib.utils.runtime import kernel_transport_encryption

REPO = Path(__file__).resolve().parents[1]


def test_the_command_serves_the_root_to_root_users_with_the_port_address_and_token_asked_for():
    cmd = lab_command(REPO, 9123, "abc", "0.0.0.0", python="/venv/bin/python")
    assert cmd[:3] == ["/venv/bin/python", "-m", "jupyterlab"]
    for flag in ("--allow-root", "--no-browser", f"--ServerApp.root_dir={REPO}", "--ServerApp.port=9123",
                 "--ServerApp.ip=0.0.0.0", "--IdentityProvider.token=abc", "--ServerApp.port_retries=0",
                 f"--KernelManager.transport_encryption={kernel_transport_encryption()}",
                 "--AsyncContentsManager.checkpoints_class=expertlib.run.lab.RootCheckpoints"):  # fmt: skip
        assert flag in cmd, flag
    assert lab_url(9123, "abc") == "http://127.0.0.1:9123/lab?token=abc"
    assert lab_url(9123, "abc", "0.0.0.0") == f"http://{socket.gethostname()}:9123/lab?token=abc"


def test_make_lab_passes_its_variables_to_the_one_command(monkeypatch, capsys):
    dry = subprocess.run(["make", "-n", "lab", "LAB_PORT=9123", "LAB_TOKEN=abc", "LAB_IP=0.0.0.0"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    line = next(x for x in dry.splitlines() if "-m expertlib.lab" in x)
    args = re.sub(r"^\S+ -m expertlib\.lab ", "", line).replace("'", "").split()
    assert args == ["--port", "9123", "--ip", "0.0.0.0", "--token", "abc"]
    ran = []
    monkeypatch.setattr(os, "execv", lambda exe, argv: ran.append(argv))
    monkeypatch.chdir(
        REPO / "notebooks"
    )  # make runs in the root; from anywhere in the checkout Lab serves the root
    main(args)
    assert ran == [lab_command(REPO, 9123, "abc", "0.0.0.0")]
    assert f"open {lab_url(9123, 'abc', '0.0.0.0')}" in capsys.readouterr().out
    ran.clear()
    main([])  # no LAB_TOKEN: a fresh random token, printed in the URL
    token = ran[0][ran[0].index(next(a for a in ran[0] if a.startswith("--IdentityProvider.token=")))].split(
        "="
    )[1]
    assert len(token) >= 32 and f"/lab?token={token}" in capsys.readouterr().out


def test_a_bad_port_is_named_with_the_variable_to_set(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--port", "http"])
    assert (
        e.value.code == 2 and "'http' is not a port number (1-65535): set LAB_PORT" in capsys.readouterr().err
    )


def test_checkpoints_mirror_the_tree_in_one_folder_at_the_root(tmp_path):
    cp = lab.RootCheckpoints(root_dir=str(tmp_path))
    assert cp.checkpoint_path("checkpoint", "notebooks/06_report.ipynb") == str(
        tmp_path / ".ipynb_checkpoints" / "notebooks" / "06_report-checkpoint.ipynb"
    )
    assert cp.checkpoint_path("checkpoint", "/a.ipynb") == str(
        tmp_path / ".ipynb_checkpoints" / "a-checkpoint.ipynb"
    )
    assert not (tmp_path / "notebooks").exists()


# -- the browser test ------------------------------------------------------------------------------------------
def _files(folder: Path, hashed: bool = True, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones too), with its SHA-256 (or its size)."""
    out = {}
    for p in sorted(folder.rglob("*")) if folder.exists() else []:
        rel = p.relative_to(folder).as_posix()
        if p.is_file() and rel not in skip:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if hashed else str(p.stat().st_size)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _isolated_jupyter(tmp: Path) -> dict[str, str]:
    """Jupyter's and Lab's own folders in ``tmp`` (not the user's), with Lab's autosave off: a run longer than
    its 2-minute interval would otherwise save the executed notebook."""
    settings = tmp / "settings" / "@jupyterlab" / "docmanager-extension"
    settings.mkdir(parents=True)
    (settings / "plugin.jupyterlab-settings").write_text(json.dumps({"autosave": False}))
    return {"JUPYTER_CONFIG_DIR": str(tmp / "config"), "JUPYTER_DATA_DIR": str(tmp / "data"),
            "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"), "JUPYTERLAB_SETTINGS_DIR": str(tmp / "settings"),
            "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "workspaces"), "IPYTHONDIR": str(tmp / "ipython")}  # fmt: skip


@pytest.mark.browser
def test_the_report_runs_in_jupyterlab_and_leaves_notebooks_and_results_as_they_were(tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, (
        "Chromium is needed: `make test` installs Debian's chromium package (apt-get install chromium)"
    )
    from playwright.sync_api import sync_playwright

    results = REPO / "results" / "cpu"
    notebooks, data = _files(REPO / "notebooks"), _files(REPO / "data", hashed=False)
    committed = {p: (results / p).read_bytes() for p in _files(results, hashed=False, skip=(".lock",))}
    checkpoints = REPO / ".ipynb_checkpoints"  # git-ignored; Lab's own, kept here by make lab's settings
    checkpoint, had_checkpoints = (
        checkpoints / "notebooks" / "06_report-checkpoint.ipynb",
        checkpoints.exists(),
    )
    had_checkpoint = checkpoint.exists()
    port, token = _free_port(), secrets.token_hex(16)
    log = (tmp_path / "lab.log").open("w")
    server = subprocess.Popen(lab_command(REPO, port, token), cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                              env={**os.environ, **_isolated_jupyter(tmp_path)})  # fmt: skip
    t0 = time.monotonic()
    try:
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2)
                break
            except OSError:
                assert server.poll() is None and time.monotonic() - t0 < 120, (
                    tmp_path / "lab.log"
                ).read_text()
                time.sleep(0.2)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, headless=True,
                                         args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                                               "--disable-background-networking", "--disable-component-update",
                                               "--disable-sync"])  # fmt: skip
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(240_000)
            page.goto(f"http://127.0.0.1:{port}/lab/tree/notebooks/06_report.ipynb?token={token}")
            # the notebook's kernel is up and idle: Run All before that would ask which kernel to start
            page.wait_for_function("/\\(ipykernel\\) \\| Idle/.test(document.querySelector('#jp-main-statusbar')"
                                   "?.textContent ?? '')")  # fmt: skip
            page.click(".lm-MenuBar-itemLabel:text-is('Run')")
            page.click(".lm-Menu-itemLabel:text-is('Run All Cells')")
            # the run is over when no cell waits ([*]) and one has run; a failing cell stops it, leaving "[ ]" after it
            prompts = "[...document.querySelectorAll('.jp-NotebookPanel .jp-InputPrompt')].map(e => e.textContent.trim()).filter(t => t)"  # fmt: skip
            page.wait_for_function(
                f"(p => p.some(t => /\\[\\d+\\]/.test(t)) && !p.some(t => t.includes('*')))({prompts})"
            )
            unrun = [t for t in page.evaluate(prompts) if not re.fullmatch(r"\[\d+\]:", t)]
            if not unrun:  # every cell ran: its figures are on their way into the page
                page.wait_for_function("document.querySelectorAll('.jp-NotebookPanel .jp-OutputArea-output img')"
                                       ".length >= 3", timeout=30_000)  # fmt: skip
            figures = page.locator(".jp-NotebookPanel .jp-OutputArea-output img").count()
            printed = " ".join(page.locator(".jp-NotebookPanel .jp-OutputArea-output").all_text_contents())
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot))
            browser.close()
        seconds = time.monotonic() - t0
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()
    try:
        assert not unrun and "Traceback" not in printed, (
            f"cells not run: {unrun}; the page says {printed[-3000:]}"
        )
        assert figures >= 3 and shot.stat().st_size > 10_000, "the report's figures are not on the page"
        assert (
            "working in the repository root" in printed
        )  # the kernel began in notebooks/ and moved to the root
        assert _files(REPO / "notebooks") == notebooks, "something new or changed under notebooks/"
        assert _files(REPO / "data", hashed=False) == data, "the report built data it does not read"
        assert checkpoint.exists()  # Lab's checkpoint went to the root's .ipynb_checkpoints/, not notebooks/
        changed = sorted(
            p for p, b in committed.items() if not (results / p).is_file() or (results / p).read_bytes() != b
        )
        new = sorted(set(_files(results, hashed=False, skip=(".lock",))) - set(committed))
        assert not changed and not new, f"the committed results changed: {changed}, new: {new}"
    finally:  # leave the checkout as it was, whatever failed
        for p, b in committed.items():
            if not (results / p).is_file() or (results / p).read_bytes() != b:
                (results / p).write_bytes(b)
        for p in set(_files(results, hashed=False, skip=(".lock",))) - set(committed):
            (results / p).unlink()
        if not had_checkpoints:
            shutil.rmtree(checkpoints, ignore_errors=True)
        elif not had_checkpoint:
            checkpoint.unlink(missing_ok=True)
    print(f"browser test: {seconds:.0f} s from starting Lab to the figures on the page")
