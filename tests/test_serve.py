"""``samgeo-pipeline serve``: read-only HTTP over an output root, range requests, path refusal."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from samgeo_pipeline.errors import InputError
from samgeo_pipeline.serve import PathRefused, is_loopback, make_server, parse_range, resolve_request_path


@pytest.fixture()
def served(tmp_path: Path):
    """An output root with a scene folder, a secret outside it and an escaping symlink."""
    root = tmp_path / "out"
    scene = root / "scene"
    scene.mkdir(parents=True)
    (scene / "mask.tif").write_bytes(bytes(range(256)) * 4)  # 1024 bytes
    (scene / "water.gpkg").write_bytes(b"SQLite format 3\x00")
    (scene / "manifest.json").write_text('{"status": "done"}')
    (scene / "quicklook.png").write_bytes(b"\x89PNG\r\n")
    (tmp_path / "secret.txt").write_text("secret")
    (root / "escape").symlink_to(tmp_path / "secret.txt")
    (root / "inside").symlink_to(scene / "manifest.json")
    server = make_server(root, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def request(server, method: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.putrequest(method, path, skip_accept_encoding=True)  # raw path: no client-side normalisation
    for key, value in (headers or {}).items():
        conn.putheader(key, value)
    conn.endheaders()
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body


class TestServer:
    def test_binds_loopback_by_default(self, tmp_path: Path) -> None:
        server = make_server(tmp_path, port=0)
        try:
            assert server.server_address[0] == "127.0.0.1"
        finally:
            server.server_close()
        assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
        assert not is_loopback("0.0.0.0")

    def test_missing_root_is_an_input_error(self, tmp_path: Path) -> None:
        with pytest.raises(InputError, match="no such directory"):
            make_server(tmp_path / "nope", port=0)

    @pytest.mark.parametrize(
        ("name", "content_type"),
        [
            ("mask.tif", "image/tiff"),
            ("water.gpkg", "application/geopackage+sqlite3"),
            ("manifest.json", "application/json"),
            ("quicklook.png", "image/png"),
        ],
    )
    def test_content_types(self, served, name: str, content_type: str) -> None:
        status, headers, body = request(served, "GET", f"/scene/{name}")
        assert status == 200
        assert headers["content-type"] == content_type
        assert headers["accept-ranges"] == "bytes"
        assert int(headers["content-length"]) == len(body) > 0

    def test_range_requests(self, served) -> None:
        full = bytes(range(256)) * 4
        status, headers, body = request(served, "GET", "/scene/mask.tif", {"Range": "bytes=10-19"})
        assert (status, body) == (206, full[10:20])
        assert headers["content-range"] == "bytes 10-19/1024"
        assert headers["content-length"] == "10"
        status, headers, body = request(served, "GET", "/scene/mask.tif", {"Range": "bytes=1000-"})
        assert (status, body, headers["content-range"]) == (206, full[1000:], "bytes 1000-1023/1024")
        status, _, body = request(served, "GET", "/scene/mask.tif", {"Range": "bytes=-4"})
        assert (status, body) == (206, full[-4:])
        status, _, body = request(served, "GET", "/scene/mask.tif", {"Range": "bytes=1000-5000"})
        assert (status, body) == (206, full[1000:])

    @pytest.mark.parametrize("bad", ["bytes=2000-", "bytes=20-10", "bytes=abc", "bytes=-0"])
    def test_unsatisfiable_range_is_416(self, served, bad: str) -> None:
        status, headers, _ = request(served, "GET", "/scene/mask.tif", {"Range": bad})
        assert status == 416
        assert headers["content-range"] == "bytes */1024"

    def test_head_has_headers_and_no_body(self, served) -> None:
        status, headers, body = request(served, "HEAD", "/scene/mask.tif")
        assert (status, body) == (200, b"")
        assert headers["content-length"] == "1024"
        status, headers, body = request(served, "HEAD", "/scene/mask.tif", {"Range": "bytes=0-99"})
        assert (status, body, headers["content-length"]) == (206, b"", "100")

    @pytest.mark.parametrize(
        "path",
        ["/../secret.txt", "/scene/../../secret.txt", "/%2e%2e/secret.txt", "//etc/passwd", "/%2Fetc/passwd",
         "/escape", "/scene/..%2F..%2Fsecret.txt"],
    )
    def test_refuses_paths_outside_the_root(self, served, path: str) -> None:
        status, _, body = request(served, "GET", path)
        # http.server itself collapses a leading '//' to '/', which then names a (missing) file inside the root
        assert status == (404 if path == "//etc/passwd" else 403)
        assert b"secret" not in body and b"root:" not in body

    def test_symlink_inside_the_root_is_served(self, served) -> None:
        status, _, body = request(served, "GET", "/inside")
        assert (status, body) == (200, b'{"status": "done"}')

    def test_listing_and_errors(self, served) -> None:
        status, headers, body = request(served, "GET", "/scene")
        assert status == 301 and headers["location"] == "/scene/"
        status, headers, body = request(served, "GET", "/scene/")
        assert status == 200 and b'href="mask.tif"' in body
        status, _, body = request(served, "GET", "/")
        assert b"escape" not in body  # a link leading outside is not listed
        assert request(served, "GET", "/scene/missing.tif")[0] == 404
        assert request(served, "POST", "/scene/mask.tif")[0] == 405


class TestPathRules:
    def test_resolve(self, tmp_path: Path) -> None:
        root = tmp_path.resolve()
        (root / "a b").mkdir()
        assert resolve_request_path(root, "/a%20b") == root / "a b"
        assert resolve_request_path(root, "/") == root
        for bad in ("/..", "/a/../..", "//x", "/%00", "/a%5C..%5C.."):
            with pytest.raises(PathRefused):
                resolve_request_path(root, bad)

    def test_parse_range(self) -> None:
        assert parse_range("bytes=0-0", 10) == (0, 0)
        assert parse_range("bytes=5-", 10) == (5, 9)
        assert parse_range("bytes=-20", 10) == (0, 9)
        assert parse_range("items=0-1", 10) is None
        assert parse_range("bytes=0-1,4-5", 10) is None  # multi-range: whole file
        for bad in ("bytes=10-", "bytes=3-2", "bytes=-", "bytes=x-1"):
            with pytest.raises(ValueError):
                parse_range(bad, 10)


def test_cli_serve_subprocess(tmp_path: Path) -> None:
    """``samgeo-pipeline serve`` starts, answers, binds loopback and stops on SIGINT."""
    import socket

    (tmp_path / "f.json").write_text("{}")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "samgeo_pipeline.cli", "serve", str(tmp_path), "--port", str(port)],
        stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        line = proc.stderr.readline()
        assert f"http://127.0.0.1:{port}/" in line
        deadline = time.monotonic() + 20
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/f.json")
                resp = conn.getresponse()
                break
            except ConnectionRefusedError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert (resp.status, resp.read(), resp.getheader("Content-Type")) == (200, b"{}", "application/json")
        conn.close()
    finally:
        proc.send_signal(2)
        try:
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
