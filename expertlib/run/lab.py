"""JupyterLab at the repository root, for every user (root included): ``make lab``, which runs ``python -m
expertlib.lab --port LAB_PORT --ip LAB_IP [--token LAB_TOKEN]`` and prints the URL to open.

:func:`lab_command` is the one place the command line is built; the browser test starts Lab through it, as
``make lab`` does. Lab serves the repository root, so ``notebooks/`` and ``results/`` are both browsable; a
notebook's kernel starts in ``notebooks/`` and its first step moves it to the root
(:func:`expertlib.utils.runtime.work_at_repository_root`), so relative paths mean what they mean to ``make
reproduce``. Lab's own checkpoints go to one folder at the root, ``.ipynb_checkpoints/<folder>/`` (git-ignored),
instead of a ``.ipynb_checkpoints/`` beside each file (:data:`RootCheckpoints`), so nothing but the notebooks
themselves is ever written under ``notebooks/``. Lab never opens a browser itself (a server or a root shell
has none to open): the URL is printed.
"""

from __future__ import annotations

import argparse
import functools
import os
import secrets
import socket
import sys
from pathlib import Path

from expertlib.utils.runtime import kernel_transport_encryption, repository_root

DEFAULT_PORT = 8888
# this machine only; LAB_IP=0.0.0.0 serves every interface (a remote or container host)
DEFAULT_IP = "127.0.0.1"


def lab_command(root: str | os.PathLike, port: int, token: str, ip: str = DEFAULT_IP,
                python: str = sys.executable) -> list[str]:  # fmt: skip
    """The JupyterLab command line: serving ``root`` on ``ip:port`` with ``token``, allowed as root (Jupyter
    refuses root without ``--allow-root``), no browser, no call home (news, update checks), and kernels on
    an encrypted channel where pyzmq can (which also spares every kernel's "running over TCP without
    encryption" warning)."""
    encryption = kernel_transport_encryption()
    return [
        python, "-m", "jupyterlab", "--no-browser", "--allow-root",
        f"--ServerApp.root_dir={Path(root).resolve()}",
        f"--ServerApp.ip={ip}",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",  # the port asked for, or a clear error: the printed URL must be right
        f"--IdentityProvider.token={token}",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--AsyncContentsManager.checkpoints_class=expertlib.run.lab.RootCheckpoints",
        *([f"--KernelManager.transport_encryption={encryption}"] if encryption else []),
    ]  # fmt: skip


@functools.cache
def _root_checkpoints() -> type:
    from jupyter_core.utils import ensure_dir_exists
    from jupyter_server.services.contents.filecheckpoints import AsyncFileCheckpoints

    class RootCheckpoints(AsyncFileCheckpoints):
        """Jupyter's file checkpoints, kept in one folder at the served root that mirrors the tree
        (``.ipynb_checkpoints/notebooks/06_report-checkpoint.ipynb``) rather than beside each file."""

        def checkpoint_path(self, checkpoint_id: str, path: str) -> str:
            parent, name = ("/" + path.strip("/")).rsplit("/", 1)
            basename, ext = os.path.splitext(name)
            folder = os.path.join(self.root_dir, self.checkpoint_dir, *[p for p in parent.split("/") if p])
            with self.perm_to_403():
                ensure_dir_exists(folder)
            return os.path.join(folder, f"{basename}-{checkpoint_id}{ext}")

    RootCheckpoints.__module__ = __name__
    return RootCheckpoints


def __getattr__(name: str):  # RootCheckpoints is built on first use: importing this module needs no Jupyter
    if name == "RootCheckpoints":
        return _root_checkpoints()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def lab_url(port: int = DEFAULT_PORT, token: str = "", ip: str = DEFAULT_IP, path: str = "lab") -> str:
    """The URL a browser opens (an all-interfaces ``ip`` is named by this machine's host name)."""
    host = socket.gethostname() if ip in ("", "0.0.0.0", "::") else ip
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}/{path}" + (f"?token={token}" if token else "")


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535): set LAB_PORT to one")
    return port


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m expertlib.lab",
                                 description="JupyterLab at the repository root (make lab): prints the URL, then runs Lab")  # fmt: skip
    ap.add_argument(
        "--port", type=_port, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT} (make: LAB_PORT)"
    )
    ap.add_argument("--ip", default=DEFAULT_IP, help=f"default {DEFAULT_IP} (make: LAB_IP)")
    ap.add_argument("--token", default=None,
                    help="the access token (make: LAB_TOKEN); default: a new random one, printed in the URL")  # fmt: skip
    ap.add_argument("--root", default=None, help="the folder Lab serves (default: the repository root)")
    args = ap.parse_args(argv)
    root = Path(args.root) if args.root else repository_root() or Path.cwd()
    if not root.is_dir():
        ap.error(f"--root {root} is not a folder")
    token = args.token if args.token else secrets.token_hex(24)
    cmd = lab_command(root, args.port, token, args.ip)
    print(f"JupyterLab at {root}: open {lab_url(args.port, token, args.ip)} (Ctrl-C stops it)", flush=True)
    os.execv(cmd[0], cmd)  # Lab takes over this process: Ctrl-C and exit codes are its own
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
