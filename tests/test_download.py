"""``python -m expertlib.download`` against a local HTTP server started here (Range requests included): a full
download, a connection dropped mid-file then resumed, a 404, an HTML page in place of an archive, a corrupted
archive (CRC32C), a lock-file mismatch, a full disk; then notebook 01's data check on what landed."""

from __future__ import annotations

import errno
import io
import re
import shutil
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from expertlib.datasets.fixtures import RELEASED_FIXTURES
from expertlib.models.download_checks import LOCK_NAME, DownloadLock
from expertlib.pipeline import download as D
from expertlib.utils import fetch as F

EXPERTS = ("bird", "food", "nutrient")
TASKS = ("resisc45", "dsprites_location")


def saved_model_tarball(folder: Path, corrupt: bool = False) -> bytes:
    """A TF Hub compressed SavedModel (``./saved_model.pb``, ``./variables/...`` at the archive's root) of a fixture
    expert; ``corrupt``: one byte of its variables flipped, as a damaged download would have."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for p in sorted(folder.rglob("*")):
            if p.is_dir():
                continue
            data = p.read_bytes()
            if corrupt and p.name.startswith("variables.data"):
                data = data[:100] + bytes([data[100] ^ 0xFF]) + data[101:]
            info = tarfile.TarInfo("./" + p.relative_to(folder).as_posix())
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def bit_npz() -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **dict(np.load(RELEASED_FIXTURES / "base.npz")))
    return buf.getvalue()


class Server:
    """A local HTTP server over ``files`` (path -> bytes) that honours ``Range: bytes=N-``; ``drop``: path -> byte
    count after which the first response for that path is cut (the connection closes mid-file)."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files, self.drop, self.requests = dict(files), {}, []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                path = self.path.split("?")[0].lstrip("/")
                rng = self.headers.get("Range")
                owner.requests.append((path, rng))
                if path not in owner.files:
                    self.send_error(404, "Not Found")
                    return
                body, start = owner.files[path], 0
                if rng:
                    start = int(re.match(r"bytes=(\d+)-", rng)[1])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                html = body.lstrip().startswith(b"<")
                self.send_header("Content-Type", "text/html" if html else "application/octet-stream")
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                cut = owner.drop.pop(path, None)
                self.wfile.write(body[start : cut if cut is not None else len(body)])
                if cut is not None:
                    self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def mirror_files(**replace: bytes) -> dict[str, bytes]:
    files = {"BiT-M-R50x1.npz": bit_npz()}
    files |= {
        f"released_experts/{e}.tar.gz": saved_model_tarball(RELEASED_FIXTURES / e / "1") for e in EXPERTS
    }
    return files | replace


def fetch(root, server, experts=EXPERTS, **kw):
    sc = D.released_scale("released", experts, TASKS)
    return D.download_released(root, sc, server.url, jobs=kw.pop("jobs", 2), progress=False, log=lambda s: None,
                               retries=kw.pop("retries", 2), backoff=0.01, timeout=5, **kw)  # fmt: skip


def test_urls_are_built_from_the_registry_and_a_mirror_keeps_the_data_roots_layout(tmp_path):
    sc = D.released_scale()
    files = dict(D.released_files(sc, tmp_path))
    assert (
        len(files) == 49
        and files["BiT-M-R50x1.npz"].url == "https://storage.googleapis.com/bit_models/BiT-M-R50x1.npz"
    )
    assert files["released_experts/animal.tar.gz"].url == (
        "https://tfhub.dev/google/experts/bit/r50x1/in21k/animal/1?tf-hub-format=compressed"
    )
    assert (
        files["released_experts/woody_plant.tar.gz"].dest
        == tmp_path / "released_experts" / "woody_plant.tar.gz"
    )
    mirrored = dict(D.released_files(sc, tmp_path, "http://m.example/data/"))
    assert (
        mirrored["released_experts/bird.tar.gz"].url == "http://m.example/data/released_experts/bird.tar.gz"
    )
    with pytest.raises(ValueError, match="unknown released expert.*'brid'"):
        D.released_scale("released", ["brid"])
    with pytest.raises(ValueError, match="scale 'paper' downloads nothing"):
        D.released_scale("paper")


def test_full_download_then_a_rerun_verifies_instead_of_fetching(tmp_path):
    files = mirror_files()
    with Server(files) as server:
        assert fetch(tmp_path, server) == []
        assert {Path(p).name for p, _ in server.requests} == {
            "BiT-M-R50x1.npz",
            *(f"{e}.tar.gz" for e in EXPERTS),
        }
        lock = DownloadLock(tmp_path).entries
        assert set(lock) == set(files) and lock["released_experts/bird.tar.gz"]["size"] == len(
            files["released_experts/bird.tar.gz"]
        )
        assert all((tmp_path / rel).read_bytes() == body for rel, body in files.items())
        assert not list(tmp_path.rglob("*.part"))
        server.requests.clear()
        assert (
            fetch(tmp_path, server) == [] and server.requests == []
        )  # in place and verified: nothing fetched


def test_a_connection_dropped_mid_file_resumes_from_the_partial_file(tmp_path):
    files = mirror_files()
    rel = "released_experts/food.tar.gz"
    with Server(files) as server:
        server.drop[rel] = 5000
        assert fetch(tmp_path, server, experts=("food",)) == []
        asked = [r for p, r in server.requests if p == rel]
        assert asked == [None, "bytes=5000-"]  # the second request asks for the rest only
    assert (tmp_path / rel).read_bytes() == files[rel]


def test_a_partial_file_left_by_a_kill_is_resumed_by_the_next_run(tmp_path):
    files = mirror_files()
    rel = "BiT-M-R50x1.npz"
    (tmp_path / f"{rel}.part").write_bytes(files[rel][:1234])
    with Server(files) as server:
        assert fetch(tmp_path, server, experts=("bird",)) == []
        assert ("BiT-M-R50x1.npz", "bytes=1234-") in server.requests
    assert (tmp_path / rel).read_bytes() == files[rel]


def test_a_404_names_the_file_the_url_and_the_mirror_option(tmp_path):
    files = mirror_files()
    del files["released_experts/nutrient.tar.gz"]
    with Server(files) as server:
        failures = fetch(tmp_path, server)
    assert len(failures) == 1 and "\n" not in failures[0]
    msg = failures[0]
    assert (
        msg.startswith("released_experts/nutrient.tar.gz: ")
        and f"{server.url}/released_experts/nutrient.tar.gz" in msg
    )
    assert "HTTP 404" in msg and "--mirror URL" in msg
    assert (tmp_path / "released_experts" / "bird.tar.gz").is_file()  # the others landed


def test_no_network_is_one_line_after_the_retries(tmp_path):
    remote = F.Remote("x.npz", "http://127.0.0.1:9/x.npz", tmp_path / "x.npz")  # port 9: nothing listens
    with pytest.raises(
        F.DownloadError,
        match=r"x.npz: http://127.0.0.1:9/x.npz cannot be reached .*no network\?.* after 3 tries.*--mirror URL",
    ):
        F.fetch(remote, retries=2, backoff=0.01, timeout=2)


def test_an_html_page_in_place_of_an_archive_is_refused_by_its_title(tmp_path):
    page = b"<!DOCTYPE html>\n<html><head><title>Sign in &amp; accept - Kaggle</title></head><body>...</body></html>"
    with Server(mirror_files(**{"released_experts/bird.tar.gz": page})) as server:
        failures = fetch(tmp_path, server, experts=("bird",))
    assert len(failures) == 1 and "sent a web page titled 'Sign in & accept - Kaggle'" in failures[0]
    assert not (tmp_path / "released_experts" / "bird.tar.gz").exists()
    assert not (tmp_path / "released_experts" / "bird.tar.gz.part").exists()  # not the file: never resumed
    assert "released_experts/bird.tar.gz" not in DownloadLock(tmp_path).entries


def test_a_corrupted_archive_is_refused_by_its_crc32c(tmp_path):
    bad = saved_model_tarball(RELEASED_FIXTURES / "food" / "1", corrupt=True)
    with Server(mirror_files(**{"released_experts/food.tar.gz": bad})) as server:
        failures = fetch(tmp_path, server, experts=("food",))
    assert (
        len(failures) == 1
        and "fail their CRC32C check" in failures[0]
        and "released_experts/food.tar.gz" in failures[0]
    )
    assert not (tmp_path / "released_experts" / "food.tar.gz").exists()


def test_a_lock_file_mismatch_refuses_the_file_with_both_hashes(tmp_path):
    files = mirror_files()
    rel = "released_experts/bird.tar.gz"
    with Server(files) as server:
        assert fetch(tmp_path, server, experts=("bird",)) == []
        recorded = DownloadLock(tmp_path).entries[rel]["sha256"]
        (tmp_path / rel).unlink()  # fetched again, but the server now sends other (sound) bytes
        server.files[rel] = saved_model_tarball(RELEASED_FIXTURES / "food" / "1")
        failures = fetch(tmp_path, server, experts=("bird",))
    assert len(failures) == 1 and recorded in failures[0] and "differs from" in failures[0]
    got = re.search(r"SHA-256 ([0-9a-f]{64})", failures[0])[1]
    assert got != recorded and not (tmp_path / rel).exists()
    # a file in place that the lock refuses is named too, and kept for the user to look at
    (tmp_path / rel).write_bytes(server.files[rel])
    with Server(files) as server:
        failures = fetch(tmp_path, server, experts=("bird",))
    assert len(failures) == 1 and "the file in place" in failures[0] and (tmp_path / rel).exists()


def test_a_full_disk_keeps_the_partial_file_and_says_so(tmp_path, monkeypatch):
    files = mirror_files()
    rel = "released_experts/bird.tar.gz"
    written: set[str] = set()
    real = F._write_chunk

    def full_after_one_chunk(f, data):  # each file's second chunk finds the disk full
        if f.name in written:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.add(f.name)
        real(f, data)

    monkeypatch.setattr(F, "CHUNK", 4096)
    monkeypatch.setattr(F, "_write_chunk", full_after_one_chunk)
    with Server(files) as server:
        failures = fetch(tmp_path, server, experts=("bird",), jobs=1)
        assert len(failures) == 2  # B and the expert: each says the disk is full
        msg = next(m for m in failures if m.startswith(rel))
        assert "the disk is full after 4,096 bytes" in msg and f"{rel}.part is kept" in msg
        assert (tmp_path / f"{rel}.part").stat().st_size == 4096
        monkeypatch.setattr(F, "_write_chunk", real)  # space freed: the same command resumes
        assert fetch(tmp_path, server, experts=("bird",)) == []
        assert (rel, "bytes=4096-") in server.requests
    assert (tmp_path / rel).read_bytes() == files[rel]


def test_the_command_ends_with_notebook_01s_data_check(tmp_path, capsys, monkeypatch):
    """``download released`` fetches B and the experts, then VTAB-1k's tasks not in place (here tensorflow_datasets
    is missing: named, with the extra and --from-tfds-dir), then runs notebook 01's data check."""
    import sys

    from expertlib.datasets.fixtures import write_released_fixture

    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    argv = ["released", "--data-root", str(tmp_path / "data"), "--results-dir", str(tmp_path / "results"),
            "--experts", *EXPERTS, "--tasks", *TASKS, "--no-progress", "--retries", "0"]  # fmt: skip
    with Server(mirror_files()) as server:
        assert (
            D.main([*argv, "--mirror", server.url]) == 1
        )  # B and the experts landed; VTAB could not be built
        err = capsys.readouterr().err
        assert (
            "VTAB-1k (2 task(s)" in err
            and "pip install 'expertlib[vtab]'" in err
            and "--from-tfds-dir" in err
        )
        assert (
            D.main([*argv, "--mirror", server.url, "--no-vtab"]) == 2
        )  # in place; the check names what lacks
        assert "data check still fails" in capsys.readouterr().err
        write_released_fixture(tmp_path / "fixture")
        shutil.copytree(
            tmp_path / "fixture" / "vtab", tmp_path / "data" / "vtab"
        )  # as `download vtab` leaves it
        server.requests.clear()
        assert D.main([*argv, "--mirror", server.url]) == 0 and server.requests == []
    out = capsys.readouterr().out
    assert (
        "data check passed: 2 tasks" in out and "scale released" in out
    )  # the plan, as notebook 01 prints it
    (tmp_path / "data" / "released_experts" / "food.tar.gz").unlink()
    with Server({}) as server:  # food is gone and the mirror is empty: the failure, then no check
        assert D.main([*argv, "--mirror", server.url]) == 1
    err = capsys.readouterr().err
    assert "1 download(s) failed" in err and "food.tar.gz" in err and "HTTP 404" in err
    assert LOCK_NAME in [p.name for p in (tmp_path / "data").iterdir()]
