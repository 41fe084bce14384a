"""`pips-jax download --model pips2` against a real HTTP server on 127.0.0.1 serving
synthetic archives shaped like the original's reference_model.tar.gz."""

import http.server
import io
import tarfile
import threading

import numpy as np
import pytest

from pips_jax import CheckpointError
from pips_jax.checkpoint import hub
from pips_jax.checkpoint.convert import convert_state_dict
from pips_jax.checkpoint.store import flatten, load_params
from pips_jax.cli import main
from pips_jax.weights import load_weights
from pth_writer import write_pth
from reference import pips2_reference_state_dict


def _tar_gz(entries) -> bytes:
    """``entries``: (TarInfo, bytes or None) pairs, written in order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        for info, data in entries:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def _file(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.REGTYPE
    info.mode = 0o644
    return info


def _symlink(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    return info


@pytest.fixture(scope="module")
def pth_bytes(tmp_path_factory):
    path = tmp_path_factory.mktemp("srv") / "model-000200000.pth"
    write_pth(path, {"optimizer_state_dict": {}, "model_state_dict": pips2_reference_state_dict()})
    return path.read_bytes()


@pytest.fixture(scope="module")
def archives(pth_bytes):
    folder = tarfile.TarInfo("reference_model")
    folder.type = tarfile.DIRTYPE
    return {
        # As the original's archive, plus an entry that would escape if extracted.
        "/good.tar.gz": _tar_gz(
            [
                (folder, None),
                (_file("../escaped.txt"), b"outside"),
                (_file("reference_model/notes.txt"), b"hello"),
                (_file("reference_model/model-000200000.pth"), pth_bytes),
            ]
        ),
        "/traversal.tar.gz": _tar_gz(
            [
                (_file("../reference_model/model-000200000.pth"), pth_bytes),
                (_file("/reference_model/model-000200000.pth"), pth_bytes),
            ]
        ),
        "/symlink.tar.gz": _tar_gz(
            [(_symlink("reference_model/model-000200000.pth", "/etc/passwd"), None)]
        ),
        "/not-a-tar.tar.gz": b"<html>this is a web page about a file</html>",
        "/truncated.tar.gz": None,  # announces a length, sends half and closes
    }


@pytest.fixture
def server(archives, pth_bytes):
    requests = []
    good = archives["/good.tar.gz"]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            path = self.path.split("?")[0]
            requests.append(path)
            if path == "/redirect":  # Dropbox answers dl=1 with a redirect
                self.send_response(302)
                self.send_header("Location", "/good.tar.gz?dl=1")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if path not in archives:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = archives[path]
            self.send_response(200)
            self.send_header("Content-Type", "application/gzip")
            if body is None:
                self.send_header("Content-Length", str(len(good)))
                self.end_headers()
                self.wfile.write(good[: len(good) // 2])
                return
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", requests
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPS_JAX_CACHE", str(tmp_path / "cache"))
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "cache"


def test_download_reads_the_member_converts_and_caches(server, cache, capsys):
    url, requests = server
    assert main(["download", "--model", "pips2", "--url", url + "/redirect"]) == 0
    out = cache / hub.PIPS2_REFERENCE_NAME
    assert str(out) in capsys.readouterr().out
    assert requests == ["/redirect", "/good.tar.gz"]
    # Only the converted file remains: the archive and the .pth were temporary.
    assert sorted(p.name for p in cache.iterdir()) == [hub.PIPS2_REFERENCE_NAME]
    # The entry named ../escaped.txt was never written anywhere.
    assert not list(cache.parent.rglob("escaped.txt"))
    params, config, meta = load_params(out)
    assert config.family == "pips2" and config.stride == 8
    assert meta["source"] == "model-000200000.pth"
    expected = flatten(convert_state_dict(pips2_reference_state_dict()))
    got = flatten(params)
    assert got.keys() == expected.keys()
    for k in expected:
        np.testing.assert_array_equal(got[k], expected[k])
    # Cached: a second call makes no request; --force downloads again.
    assert hub.download_pips2_reference(url=url + "/good.tar.gz") == out
    assert len(requests) == 2
    hub.download_pips2_reference(url=url + "/good.tar.gz", force=True)
    assert len(requests) == 3
    # track / eval / benchmark take the cached file and pick PIPs++ from it.
    weights = load_weights(out)
    assert weights.config.family == "pips2"


@pytest.mark.parametrize(
    "path, match",
    [
        ("/missing.tar.gz", "HTTP 404"),
        ("/traversal.tar.gz", "holds no reference_model/model-000200000.pth"),
        ("/symlink.tar.gz", "is a symbolic link to /etc/passwd; expected a regular file"),
        ("/not-a-tar.tar.gz", r"not a readable \.tar\.gz archive"),
        ("/truncated.tar.gz", "could not download"),
    ],
)
def test_bad_archives_fail_in_one_line_leaving_nothing(server, cache, capsys, path, match):
    url, _ = server
    with pytest.raises(CheckpointError, match=match) as e:
        hub.download_pips2_reference(url=url + path)
    assert "\n" not in str(e.value)
    assert list(cache.iterdir()) == []
    assert not list(cache.parent.rglob("model-000200000.pth"))
    # And through the command line: exit code 2, the message on one line.
    assert main(["download", "--model", "pips2", "--url", url + path]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error" in err.lower()


def test_size_limits(server, cache, archives, pth_bytes):
    url, _ = server
    size = len(archives["/good.tar.gz"])
    with pytest.raises(CheckpointError, match=f"the archive is {size} bytes; expected at most"):
        hub.download_pips2_reference(url=url + "/good.tar.gz", max_archive_bytes=size - 1)
    with pytest.raises(
        CheckpointError, match=f"model-000200000.pth is {len(pth_bytes)} bytes; expected at most"
    ):
        hub.download_pips2_reference(url=url + "/good.tar.gz", max_member_bytes=len(pth_bytes) - 1)
    assert list(cache.iterdir()) == []


def test_file_urls_and_an_unreachable_server(tmp_path, cache, archives):
    archive = tmp_path / "reference_model.tar.gz"
    archive.write_bytes(archives["/good.tar.gz"])
    out = hub.download_pips2_reference(url=archive.as_uri())
    assert load_params(out)[1].family == "pips2"
    srv = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    port = srv.server_address[1]
    srv.server_close()  # nothing listens on that port now
    with pytest.raises(CheckpointError, match=f"could not download http://127.0.0.1:{port}/x"):
        hub.download_pips2_reference(url=f"http://127.0.0.1:{port}/x", force=True)
    assert out.is_file()  # a failed --force keeps the cached weights


def test_url_is_for_pips2_only(cache, capsys):
    assert main(["download", "--url", "http://127.0.0.1:9/x"]) == 2
    assert "--url is for --model pips2" in capsys.readouterr().err
