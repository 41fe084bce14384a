"""`pips-jax download` against a real HTTP server on 127.0.0.1 posing as the Hub."""

import hashlib
import http.server
import threading

import numpy as np
import pytest

from pips_jax import CheckpointError
from pips_jax.checkpoint import hub
from pips_jax.checkpoint.convert import convert_state_dict
from pips_jax.checkpoint.store import flatten, load_params
from pips_jax.cli import main
from pth_writer import write_pth
from reference import reference_state_dict

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def checkpoint_bytes(tmp_path_factory):
    path = tmp_path_factory.mktemp("srv") / "model.pth"
    write_pth(path, {"optimizer_state_dict": {}, "model_state_dict": reference_state_dict()})
    return path.read_bytes()


@pytest.fixture
def server(checkpoint_bytes):
    etag = hashlib.sha256(checkpoint_bytes).hexdigest()
    requests = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def _headers(self):
            if self.path.split("?")[0] != f"/{hub.REPO_ID}/resolve/main/{hub.FILENAME}":
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return False
            self.send_response(200)
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("ETag", f'"{etag}"')
            self.send_header("Content-Length", str(len(checkpoint_bytes)))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            return True

        def do_HEAD(self):  # noqa: N802
            requests.append(("HEAD", self.path))
            self._headers()

        def do_GET(self):  # noqa: N802
            requests.append(("GET", self.path))
            if self._headers():
                self.wfile.write(checkpoint_bytes)

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", requests
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPS_JAX_CACHE", str(tmp_path / "pips"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return tmp_path


def test_download_converts_and_caches(server, env, monkeypatch, capsys):
    url, requests = server
    monkeypatch.setenv("HF_ENDPOINT", url)
    assert main(["download"]) == 0
    out = env / "pips" / hub.REFERENCE_NAME
    assert str(out) in capsys.readouterr().out
    assert any(m == "GET" for m, _ in requests)
    # The raw file sits in the Hugging Face cache under HF_HOME.
    assert list((env / "hf" / "hub").rglob(hub.FILENAME))
    params, config, meta = load_params(out)
    assert meta["source"] == hub.FILENAME
    expected = flatten(convert_state_dict(reference_state_dict()))
    got = flatten(params)
    for k in ("fnet/conv1/kernel", "delta_block/block_11/token_fc2/kernel", "vis_predictor/bias"):
        np.testing.assert_array_equal(got[k], expected[k])
    # Cached: a second call makes no request.
    n = len(requests)
    assert hub.download_reference() == out
    assert len(requests) == n


def test_offline_mode_uses_the_hf_cache(server, env, monkeypatch):
    url, requests = server
    monkeypatch.setenv("HF_ENDPOINT", url)
    hub.download_reference()
    (env / "pips" / hub.REFERENCE_NAME).unlink()
    n = len(requests)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = hub.download_reference()
    assert out.is_file() and len(requests) == n


def test_offline_without_cache_says_so(env, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="offline mode, not in the Hugging Face cache"):
        hub.download_reference()


def test_server_errors_are_reported(server, env, monkeypatch, capsys):
    url, _ = server
    monkeypatch.setenv("HF_ENDPOINT", url + "/nothing-here")
    assert main(["download"]) == 2
    err = capsys.readouterr().err
    assert "could not download aharley/pips/model-000200000.pth" in err
    assert not (env / "pips" / hub.REFERENCE_NAME).exists()
