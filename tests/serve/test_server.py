"""``samgeo-pipeline serve``: read-only HTTP over an output root, range requests, path refusal."""

from __future__ import annotations

import http.client
import math
import os
import select
import socket
import threading
import time
from pathlib import Path

import pytest

from samgeo_pipeline.errors import InputError
from samgeo_pipeline.serve import server as serve
from samgeo_pipeline.serve.command import is_loopback
from samgeo_pipeline.serve.server import make_server


def output_root(tmp_path: Path) -> Path:
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
    return root


@pytest.fixture()
def start_server(tmp_path: Path):
    """Start a server on :func:`output_root` with ``make_server`` keyword options; stopped after the test."""
    servers = []

    def start(**options):
        server = make_server(output_root(tmp_path), "127.0.0.1", 0, **options)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture()
def served(start_server):
    """A server with the default options."""
    return start_server()


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


def root_of(server) -> Path:
    """The folder a server serves."""
    return server.RequestHandlerClass.root


def connect(server, timeout: float = 5.0) -> socket.socket:
    """A raw TCP connection to ``server``, for clients that misbehave below HTTP."""
    return socket.create_connection(server.server_address[:2], timeout=timeout)


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (``socket.timeout`` if it never does)."""
    data = b""
    while block := sock.recv(65536):
        data += block
    return data


class TestAttacks:
    """Each test is an attack or accident the server must survive, and still answer afterwards."""

    def test_symlink_loop_is_404_and_the_listing_survives(self, served) -> None:
        root = root_of(served)
        (root / "loop").symlink_to(root / "loop")
        (root / "scene" / "ping").symlink_to(root / "scene" / "pong")
        (root / "scene" / "pong").symlink_to(root / "scene" / "ping")
        for path in ("/loop", "/loop/", "/loop/mask.tif", "/scene/ping", "/scene/pong/x"):
            assert request(served, "GET", path)[0] == 404, path
        status, _, body = request(served, "GET", "/")
        assert status == 200 and b'href="scene/"' in body and b"loop" not in body
        status, _, body = request(served, "GET", "/scene/")
        assert status == 200 and b'href="mask.tif"' in body and b"ping" not in body
        assert request(served, "GET", "/scene/mask.tif")[0] == 200

    def test_over_long_names_are_404(self, served) -> None:
        for path in ("/" + "a" * 300, "/scene/" + "b" * 300 + ".tif", "/" + "/".join(["c" * 200] * 30)):
            status, _, body = request(served, "GET", path)
            assert status == 404 and len(body) < 100
        assert request(served, "GET", "/scene/mask.tif")[0] == 200

    def test_file_name_that_is_not_utf8_does_not_break_the_listing(self, served) -> None:
        os.close(os.open(os.fsencode(root_of(served) / "scene") + b"/\xff\xfe.tif", os.O_CREAT | os.O_WRONLY))
        status, _, body = request(served, "GET", "/scene/")
        assert status == 200 and b'href="mask.tif"' in body

    def test_hidden_entries_are_neither_served_nor_listed(self, served) -> None:
        root = root_of(served)
        (root / ".samgeo-staging").mkdir()
        (root / ".samgeo-staging" / "input.tif").write_bytes(b"remote input")
        (root / "scene" / ".mask.tif.tmp-1a2b").write_bytes(b"half written")
        (root / ".env").write_text("TOKEN=x")
        (root / "staged").symlink_to(root / ".samgeo-staging" / "input.tif")  # a visible name for a hidden file
        for path in ("/.samgeo-staging/input.tif", "/.samgeo-staging/", "/%2esamgeo-staging/input.tif",
                     "/scene/.mask.tif.tmp-1a2b", "/scene/./.mask.tif.tmp-1a2b", "/.env", "/staged"):
            status, _, body = request(served, "GET", path)
            assert status == 404 and b"remote input" not in body and b"half written" not in body, path
        for folder in ("/", "/scene/"):
            body = request(served, "GET", folder)[2]
            assert b"samgeo-staging" not in body and b".mask.tif" not in body and b".env" not in body
            assert b"staged" not in body

    @pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "GET"])
    def test_a_request_body_is_not_answered_as_a_second_request(self, served, method: str) -> None:
        smuggled = b"GET /scene/manifest.json HTTP/1.1\r\nHost: x\r\n\r\n"
        with connect(served) as sock:  # raw: http.client may drop a surplus answer with its read buffer
            sock.sendall(
                f"{method} /scene/mask.tif HTTP/1.1\r\nHost: x\r\nContent-Length: {len(smuggled)}\r\n\r\n".encode()
                + smuggled
                + b"GET /scene/quicklook.png HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            answers = read_until_closed(sock)
        assert answers.startswith(b"HTTP/1.1 200 " if method == "GET" else b"HTTP/1.1 405 ")
        assert answers.count(b"HTTP/1.1 ") == 2 and b'"status"' not in answers
        assert answers.endswith(b"\r\n\r\n\x89PNG\r\n")

    @pytest.mark.parametrize(
        "headers",
        ["Content-Length: 50000000", "Transfer-Encoding: chunked", "Content-Length: 5\r\nContent-Length: 9",
         "Content-Length: -1"],
    )
    def test_a_body_too_large_or_unclear_to_drop_closes_the_connection(self, served, headers: str) -> None:
        with connect(served) as sock:
            sock.sendall(f"POST /scene/mask.tif HTTP/1.1\r\nHost: x\r\n{headers}\r\n\r\n".encode())
            answer = read_until_closed(sock)
        assert answer.startswith(b"HTTP/1.1 405 ") and b"\r\nConnection: close\r\n" in answer
        assert answer.count(b"HTTP/1.1") == 1
        assert request(served, "GET", "/scene/mask.tif")[0] == 200

    def test_idle_and_stalled_clients_are_disconnected_while_others_are_served(self, start_server) -> None:
        server = start_server(idle_timeout=0.5)
        with connect(server) as idle, connect(server) as stalled:
            stalled.sendall(b"GET /scene/mas")  # a request line that never ends
            for _ in range(3):
                assert request(server, "GET", "/scene/mask.tif")[0] == 200
            started = time.monotonic()
            assert read_until_closed(idle) == b""
            assert read_until_closed(stalled) == b""
            assert time.monotonic() - started < 4  # the 0.5 s timeout, not the client's 5 s one

    def test_a_client_that_stops_reading_is_cut_off_and_frees_its_slot(self, start_server) -> None:
        server = start_server(idle_timeout=0.5, max_connections=1)
        size = 32 << 20  # far more than the socket buffers hold
        (root_of(server) / "scene" / "big.tif").write_bytes(bytes(size))
        reader = socket.socket()
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        reader.connect(server.server_address[:2])
        try:
            reader.sendall(b"GET /scene/big.tif HTTP/1.1\r\nHost: x\r\n\r\n")  # then reads nothing
            deadline = time.monotonic() + 4
            while (status := request(server, "HEAD", "/scene/mask.tif")[0]) == 503 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert status == 200
            reader.settimeout(5)
            assert len(read_until_closed(reader)) < size
        finally:
            reader.close()

    def test_requests_beyond_the_answering_slots_get_503_and_slots_come_back(self, start_server) -> None:
        server = start_server(max_connections=2)
        (root_of(server) / "scene" / "big.tif").write_bytes(bytes(32 << 20))  # far more than socket buffers
        idle = [connect(server) for _ in range(3)]  # waiting for a head: they hold no answering slot
        readers = [stalled_reader(server, "/scene/big.tif") for _ in range(2)]  # these two hold both
        try:
            status, headers, body = request(server, "GET", "/scene/mask.tif")
            assert (status, headers["connection"], body) == (503, "close", b"server busy\n")
        finally:
            for sock in idle + readers:
                sock.close()
        assert eventually_ok(server)

    def test_idle_connections_do_not_keep_requests_out(self, start_server) -> None:
        server = start_server(max_connections=2)
        idle = [connect(server) for _ in range(4)]
        try:
            assert request(server, "GET", "/scene/mask.tif")[0] == 200
        finally:
            for sock in idle:
                sock.close()

    def test_open_connections_beyond_the_budget_are_turned_away_at_once(self, start_server) -> None:
        server = start_server(max_connections=1, max_per_client=100)
        held = [connect(server) for _ in range(serve.OPEN_PER_SLOT)]  # the whole budget of open connections
        try:
            with connect(server) as extra:
                assert read_until_closed(extra).startswith(b"HTTP/1.1 503 ")
        finally:
            for sock in held:
                sock.close()
        assert eventually_ok(server)

    def test_a_client_over_its_cap_is_turned_away_without_using_the_global_budget(self, start_server) -> None:
        server = start_server(max_connections=1, max_per_client=2)  # 4 open connections in all
        held = [connect(server) for _ in range(2)]
        try:
            for _ in range(5):  # had these been counted, nothing would be left for another address
                with connect(server) as extra:
                    assert read_until_closed(extra).startswith(b"HTTP/1.1 503 ")
            try:
                other = http.client.HTTPConnection(*server.server_address[:2], timeout=5,
                                                   source_address=("127.0.0.2", 0))
                other.request("GET", "/scene/mask.tif")
            except OSError:
                pytest.skip("127.0.0.2 is not a loopback address here")
            assert other.getresponse().status == 200
            other.close()
        finally:
            for sock in held:
                sock.close()
        assert eventually_ok(server)  # the address is served again once its connections end

    def test_a_normal_client_is_served_while_32_slow_clients_drip_their_heads(self, start_server) -> None:
        server = start_server(max_per_client=64)  # every test client is 127.0.0.1
        slow = [connect(server) for _ in range(32)]
        stop = threading.Event()
        drippers = [threading.Thread(target=drip, args=(sock, stop), daemon=True) for sock in slow]
        try:
            for thread in drippers:
                thread.start()
            time.sleep(1)  # every slow client has sent a few bytes of its head
            for _ in range(3):
                assert request(server, "GET", "/scene/mask.tif")[0] == 200
            assert all(thread.is_alive() for thread in drippers)  # the slow ones are all still connected
        finally:
            stop.set()
            for thread in drippers:
                thread.join()
            for sock in slow:
                sock.close()

    @pytest.mark.parametrize("when", ["first head", "head after an answer", "body"])
    def test_a_request_that_trickles_in_is_cut_off_at_the_header_deadline(self, start_server, when: str) -> None:
        server = start_server(header_timeout=1.0)  # the idle timeout stays 30 s: each byte is in time
        with connect(server) as sock:
            if when == "head after an answer":
                sock.sendall(b"GET /scene/quicklook.png HTTP/1.1\r\nHost: x\r\n\r\n")
                assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
            elif when == "body":
                sock.sendall(b"POST /scene/mask.tif HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
            started = time.monotonic()
            drip(sock, threading.Event(), until=started + 8)
            assert time.monotonic() - started < 6  # closed by the 1 s deadline, not at the test's 8 s

    def test_an_idle_keep_alive_connection_is_closed_at_the_header_deadline(self, start_server) -> None:
        server = start_server(header_timeout=0.5)
        with connect(server) as sock:
            sock.sendall(b"GET /scene/quicklook.png HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_until_closed(sock).startswith(b"HTTP/1.1 200 ")  # within the client's 5 s timeout

    @pytest.mark.parametrize("option", ["header_timeout", "max_per_client", "max_connections", "idle_timeout"])
    @pytest.mark.parametrize("value", [0, -1, float("nan"), float("inf")])
    def test_limits_must_be_positive_and_finite(self, tmp_path: Path, option: str, value: float) -> None:
        with pytest.raises(InputError, match=f"--{option.replace('_', '-')} must be a positive number"):
            make_server(tmp_path, port=0, **{option: value})


def stalled_reader(server, path: str) -> socket.socket:
    """A connection that asks for ``path`` and stops reading after the status line: its answer stalls."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(5)
    sock.connect(server.server_address[:2])
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert sock.recv(64).startswith(b"HTTP/1.1 200 ")
    return sock


def drip(sock: socket.socket, stop: threading.Event, until: float = math.inf) -> None:
    """Send a never-ending header one byte every 0.2 s until ``stop``, ``until`` or the server closes."""
    sock.sendall(b"GET /scene/mask.tif HTTP/1.1\r\nX-Slow: ")
    while not stop.is_set() and time.monotonic() < until:
        try:
            sock.sendall(b"a")
            if select.select([sock], [], [], 0.2)[0] and not sock.recv(65536):
                return
        except ConnectionError:
            return


def eventually_ok(server) -> bool:
    """True once a GET is answered 200 within 4 s (closed connections free their places asynchronously)."""
    deadline = time.monotonic() + 4
    while (status := request(server, "GET", "/scene/mask.tif")[0]) == 503 and time.monotonic() < deadline:
        time.sleep(0.05)
    return status == 200
