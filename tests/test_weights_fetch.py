"""``fcnfast weights``: the catalog of original weights, and fetching against a local HTTP server
on the loopback address (the real hosts are never contacted)."""

import hashlib
import http.server
import re
import socket
import threading

import pytest

from fcnfast import fetch as fetch_module
from fcnfast.cli import main
from fcnfast.download import PART_SUFFIX
from fcnfast.fetch import FetchError, cache_dir, fetch_weights, resolve_weights
from fcnfast.models import MODEL_NAMES
from fcnfast.models.layout import LAYOUTS
from fcnfast.weights_catalog import KNOWN_WEIGHTS, KnownWeights

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


class _Server(http.server.ThreadingHTTPServer):
    """Files by path; ``/broken`` stops after half its bytes; ``/page`` is HTML; ``/norange``
    ignores Range. ``requests`` records (path, Range header) of every request."""

    daemon_threads = True

    def __init__(self):
        self.files = {"/w.pth": PAYLOAD, "/broken": PAYLOAD, "/norange": PAYLOAD, "/page": b"<html>sign in</html>"}
        self.requests = []
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        server = self.server
        server.requests.append((self.path, self.headers.get("Range")))
        body = server.files.get(self.path)
        if body is None:
            self.send_error(404, "Not Found")
            return
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and self.path != "/norange":
            start = int(match.group(1))
            if start >= len(body):
                self.send_response(416)
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", "text/html" if self.path == "/page" else "application/octet-stream")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if self.path == "/broken" and not server.requests[:-1]:
            self.wfile.write(body[start:len(body) // 2])  # the first try breaks off half way
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body[start:])


@pytest.fixture
def server():
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _entry(server, path, *, kind="pth", md5=None, model="voc-fcn32s", filename="w.pth"):
    url = f"http://127.0.0.1:{server.server_address[1]}{path}"
    return KnownWeights("test-weights", kind, url, filename, model, "a test server", md5=md5)


MD5 = hashlib.md5(PAYLOAD).hexdigest()


def test_fetch_downloads_checks_and_writes_atomically(tmp_path, server):
    result = fetch_weights("x", tmp_path, progress=False, entry=_entry(server, "/w.pth", md5=MD5))
    assert result.file == tmp_path / "w.pth" and result.file.read_bytes() == PAYLOAD and result.checkpoint is None
    assert not (tmp_path / ("w.pth" + PART_SUFFIX)).exists()
    fetch_weights("x", tmp_path, progress=False, entry=_entry(server, "/w.pth", md5=MD5))
    assert len(server.requests) == 1  # cached and still matching: not downloaded again


def test_fetch_resumes_a_partial_file(tmp_path, server):
    (tmp_path / ("w.pth" + PART_SUFFIX)).write_bytes(PAYLOAD[:1000])
    result = fetch_weights("x", tmp_path, progress=False, entry=_entry(server, "/w.pth", md5=MD5))
    assert result.file.read_bytes() == PAYLOAD and server.requests == [("/w.pth", "bytes=1000-")]


def test_a_server_that_ignores_range_restarts_the_file(tmp_path, server):
    (tmp_path / ("w.pth" + PART_SUFFIX)).write_bytes(b"stale bytes")
    fetch_weights("x", tmp_path, progress=False, entry=_entry(server, "/norange", md5=MD5))
    assert (tmp_path / "w.pth").read_bytes() == PAYLOAD


def test_a_broken_transfer_keeps_its_part_and_resumes(tmp_path, server):
    entry = _entry(server, "/broken", md5=MD5)
    with pytest.raises(FetchError, match="run again to resume it"):
        fetch_weights("x", tmp_path, progress=False, entry=entry)
    kept = (tmp_path / ("w.pth" + PART_SUFFIX)).stat().st_size
    assert 0 < kept < len(PAYLOAD) and not (tmp_path / "w.pth").exists()
    fetch_weights("x", tmp_path, progress=False, entry=entry)
    assert (tmp_path / "w.pth").read_bytes() == PAYLOAD and server.requests[-1] == ("/broken", f"bytes={kept}-")


def test_a_wrong_checksum_is_refused_and_nothing_kept(tmp_path, server):
    with pytest.raises(FetchError) as info:
        fetch_weights("x", tmp_path, progress=False, entry=_entry(server, "/w.pth", md5="0" * 32))
    text = str(info.value)
    assert "checksum differs: md5 " + MD5 in text and "Fetch it by hand: download http://127.0.0.1:" in text
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("path, problem", [("/page", "web page"), ("/missing", "HTTP 404")])
def test_pages_and_http_errors_are_clear(tmp_path, server, path, problem):
    with pytest.raises(FetchError, match=problem):
        fetch_weights("x", tmp_path, progress=False, entry=_entry(server, path))


def test_an_unreachable_host_gives_the_url_and_the_next_command(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens there
    entry = KnownWeights("voc-fcn8s", "caffemodel", f"http://127.0.0.1:{port}/fcn8s-heavy-pascal.caffemodel",
                         "fcn8s-heavy-pascal.caffemodel", "voc-fcn8s", "test")
    with pytest.raises(FetchError) as info:
        fetch_weights("voc-fcn8s", tmp_path, progress=False, entry=entry, timeout=5)
    text = str(info.value)
    assert f"cannot reach {entry.url}" in text and f"download {entry.url} to {tmp_path / entry.filename}" in text
    assert f"fcnfast convert-caffe {tmp_path / entry.filename} --model voc-fcn8s -o {tmp_path / 'voc-fcn8s.pth'}" in text


def test_a_caffemodel_is_converted_on_arrival(tmp_path, server, monkeypatch):
    """The conversion itself is test_caffe_convert.py's (a real caffemodel is 500 MB): here, that
    fetch calls it once on arrival, and not again while the checkpoint is newer."""
    calls = []

    def convert(source, model, output):
        calls.append((source, model, output))
        output.write_bytes(b"checkpoint")

    monkeypatch.setattr(fetch_module, "convert_caffemodel", convert)
    entry = _entry(server, "/w.pth", kind="caffemodel", model="voc-fcn32s", filename="fcn32s.caffemodel")
    result = fetch_weights("voc-fcn32s", tmp_path, progress=False, entry=entry)
    assert calls == [(tmp_path / "fcn32s.caffemodel", "voc-fcn32s", tmp_path / "test-weights.pth")]
    assert result.checkpoint == tmp_path / "test-weights.pth"
    fetch_weights("voc-fcn32s", tmp_path, progress=False, entry=entry)
    assert len(calls) == 1


def test_the_catalog_names_the_release_weights():
    caffemodels = {e.model for e in KNOWN_WEIGHTS.values() if e.kind == "caffemodel"}
    assert caffemodels == set(MODEL_NAMES) - {"nyud-fcn32s-color-d"}  # the release has no caffemodel-url for it
    for entry in KNOWN_WEIGHTS.values():
        assert entry.model is None or entry.model in LAYOUTS
        assert entry.filename and (entry.kind == "caffemodel") == entry.url.startswith("http://dl.caffe.berkeleyvision.org/")
        assert entry.md5 is None or re.fullmatch(r"[0-9a-f]{32}", entry.md5)
    assert KNOWN_WEIGHTS["voc-fcn8s"].url.endswith("/fcn8s-heavy-pascal.caffemodel")
    assert KNOWN_WEIGHTS["pytorch-fcn-vgg16"].md5 == "aa75b158f4181e7f6230029eb96c1b13"
    assert resolve_weights("FCN8s") is KNOWN_WEIGHTS["voc-fcn8s"]
    with pytest.raises(ValueError, match="unknown weights 'fcn4s'; choose from voc-fcn32s"):
        resolve_weights("fcn4s")


def test_cache_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("FCNFAST_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c" / "weights" and cache_dir(tmp_path) == tmp_path
    monkeypatch.delenv("FCNFAST_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "fcnfast" / "weights"


def test_weights_command(tmp_path, capsys, monkeypatch, server):
    monkeypatch.setenv("FCNFAST_CACHE", str(tmp_path))
    assert main(["weights"]) == 0
    out = capsys.readouterr().out
    for entry in KNOWN_WEIGHTS.values():
        assert entry.name in out and entry.url in out
    assert "not published" in out and "c03b2953ebd846c270da1a8e8f200c09" in out
    monkeypatch.setitem(KNOWN_WEIGHTS, "pytorch-fcn-fcn32s", _entry(server, "/w.pth", md5=MD5))
    assert main(["weights", "fetch", "pytorch-fcn-fcn32s", "--quiet"]) == 0
    assert str(tmp_path / "weights" / "w.pth") in capsys.readouterr().out
    monkeypatch.setitem(KNOWN_WEIGHTS, "pytorch-fcn-fcn16s", _entry(server, "/missing", filename="m.pth"))
    assert main(["weights", "fetch", "pytorch-fcn-fcn16s", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fcnfast weights: error: ") and "HTTP 404" in err and err.count("\n") == 1
    assert main(["weights", "fetch", "fcn4s"]) == 2
    assert "unknown weights" in capsys.readouterr().err
