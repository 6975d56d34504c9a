"""``samgeo-pipeline serve OUTPUT_ROOT``: a read-only HTTP server for an output root.

The Prefect UI cannot open ``file://`` links, so the flows' artifacts link to this server
(``SAMGEO_OUTPUT_BASE_URL``, default ``http://127.0.0.1:8000/``). It binds the loopback interface
unless ``--host`` says otherwise. Standard library only; it does not import Prefect.

Served: ``GET`` and ``HEAD`` of regular files and folder listings below the root, with the content
types GIS tools expect and single HTTP range requests (``206`` / ``416``), so GDAL and QGIS can
stream a COG with ``/vsicurl/http://HOST:PORT/scene/mask.tif``. Symlinks are followed while they
stay below the root.

Refused:

* paths outside the root (``..``, absolute paths, backslash, NUL, symlinks leading out): ``403``;
* hidden entries, i.e. a path component below the root that starts with ``.`` in the URL or after
  symlinks (work files such as ``.mask.tif.tmp-*``, the flows' ``.samgeo-staging/`` copies of
  remote inputs), and paths that do not resolve (missing, symlink loops, over-long names,
  unreadable): ``404``, and listings leave them out, as they do names that are not UTF-8;
* other methods: ``405`` (``501`` with ``Connection: close`` for ones ``http.server`` does not know).

No request has a body: one of up to :data:`MAX_DISCARDED_BODY` bytes is read and dropped, so the
next request on a keep-alive connection starts in step; a larger, chunked, ambiguous or
``Expect``-ing one is not read and the connection closes after the answer.

Slow and idle clients cannot hold the server (see :mod:`samgeo_pipeline.serve.limits`): a request
head (request line and headers, and a body to drop) must be complete within :data:`HEADER_TIMEOUT_S` seconds of the
connection's start or of the previous answer, however steadily it trickles in, else the connection
is closed; a read or write stalled for :data:`IDLE_TIMEOUT_S` seconds closes it too. A connection
waiting for a head holds no answering slot: at most :data:`MAX_CONNECTIONS` requests are answered
at once (more get ``503`` and the connection closes), while up to :data:`OPEN_PER_SLOT` times as
many connections may be open, at most :data:`MAX_PER_CLIENT` from one client address; a connection
beyond either is answered ``503`` and closed at once. ``--header-timeout``, ``--idle-timeout``,
``--max-connections`` and ``--max-per-client`` (or ``make_server``'s keywords) change them.
"""

from __future__ import annotations

import email.utils
import html
import io
import math
import os
import re
import socket
import stat
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO, ClassVar
from urllib.parse import quote, unquote

from samgeo_pipeline.errors import InputError
from samgeo_pipeline.serve.limits import ConnectionBudget, HeadDeadlineReader
from samgeo_pipeline.serve.paths import PathNotServed, PathRefused, parse_range, resolve_request_path, visible_entries

CONTENT_TYPES = {
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".gpkg": "application/geopackage+sqlite3",
    ".json": "application/json",
    ".geojson": "application/geo+json",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".csv": "text/csv; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".html": "text/plain; charset=utf-8",  # never render served files as pages
    ".vrt": "application/xml",
    ".xml": "application/xml",
}
DEFAULT_CONTENT_TYPE = "application/octet-stream"
#: Seconds a connection may stay silent (no request, or a stalled read or write) before it is closed.
IDLE_TIMEOUT_S = 30.0
#: Seconds within which a request head must be complete, from the connection's start or the previous answer.
HEADER_TIMEOUT_S = 10.0
#: Requests answered at once; a complete request head beyond them is answered 503 and its connection closed.
MAX_CONNECTIONS = 32
#: Open connections (one thread each) allowed per answering slot, idle or waiting for a head included.
OPEN_PER_SLOT = 4
#: Open connections from one client address; more are answered 503 and closed at once.
MAX_PER_CLIENT = 8
#: Largest request body read and dropped to keep a keep-alive connection in step; larger ones close it.
MAX_DISCARDED_BODY = 64 * 1024
# Bytes per write: a write must finish within the idle timeout, so a 64 KiB chunk in 30 s lets
# clients as slow as ~2 KiB/s download.
_CHUNK = 64 * 1024
_DIGITS = re.compile(r"[0-9]{1,18}")
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: 12\r\nRetry-After: 1\r\nConnection: close\r\n\r\nserver busy\n"
)


class OutputRootHandler(BaseHTTPRequestHandler):
    """GET and HEAD on files and folders below :attr:`root`; nothing else."""

    root: Path = Path(".").resolve()
    #: Socket timeout of each connection (``StreamRequestHandler.setup`` applies it); see IDLE_TIMEOUT_S.
    timeout: ClassVar[float] = IDLE_TIMEOUT_S
    #: See HEADER_TIMEOUT_S.
    header_timeout: float = HEADER_TIMEOUT_S
    server_version = "samgeo-pipeline-serve"
    server: _Server
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        """Buffered reads through a :class:`HeadDeadlineReader`, so a request head has a deadline."""
        super().setup()
        self.rfile.close()  # the socket's own reader: closed, or the socket's close would wait for it
        self._clock = HeadDeadlineReader(self.connection, self.timeout)
        self.rfile = io.BufferedReader(self._clock)
        self._answering = False

    def handle_one_request(self) -> None:
        """One request, its head due within the header timeout; a client that hangs up ends quietly."""
        self._clock.start_deadline(self.header_timeout)
        try:
            super().handle_one_request()
        except ConnectionError:  # reset or broken pipe: nobody is left to answer
            self.close_connection = True
        finally:
            if self._answering:
                self._answering = False
                self.server.answering.release()

    def parse_request(self) -> bool:
        """Parse the head, then take an answering slot; none free: ``503`` and the connection closes."""
        if not super().parse_request():
            return False
        if not self.server.answering.acquire(blocking=False):
            self.close_connection = True
            self._send_error(HTTPStatus.SERVICE_UNAVAILABLE, "server busy", {"Retry-After": "1"},
                             body=self.command != "HEAD")
            return False
        self._answering = True
        return True

    def handle_expect_100(self) -> bool:
        """Never invite a body with ``100 Continue``: no request here uses one (see _discard_body)."""
        return True

    def do_HEAD(self) -> None:
        self._finish_reading()
        self._respond(body=False)

    def do_GET(self) -> None:
        self._finish_reading()
        self._respond(body=True)

    def _refuse_method(self) -> None:
        self._finish_reading()
        self._send_error(HTTPStatus.METHOD_NOT_ALLOWED, "read-only server: GET and HEAD only", {"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = _refuse_method  # noqa: N815 - http.server dispatches on these names

    def _finish_reading(self) -> None:
        """Drop the body within the head's deadline (a slow body holds a slot no longer), then lift it."""
        self._discard_body()
        self._clock.clear_deadline()

    def _discard_body(self) -> None:
        """Read and drop a request body, so that it is not taken for the connection's next request.

        A body that cannot be delimited simply and cheaply (chunked, several or invalid lengths,
        over :data:`MAX_DISCARDED_BODY` bytes, or held back for ``100 Continue``) is not read;
        the connection closes after the answer instead.
        """
        lengths = self.headers.get_all("Content-Length") or []
        if "Transfer-Encoding" in self.headers or len(lengths) > 1:
            self.close_connection = True
            return
        if not lengths:
            return
        if not _DIGITS.fullmatch(lengths[0].strip()):
            self.close_connection = True
            return
        length = int(lengths[0])
        if length > MAX_DISCARDED_BODY or (length and "Expect" in self.headers):
            self.close_connection = True
        elif length:
            self.rfile.read(length)  # bounded by the socket timeout too

    def _respond(self, body: bool) -> None:
        url_path = self.path.split("?", 1)[0].split("#", 1)[0]  # not urlsplit: '//x' is no netloc here
        try:
            target = resolve_request_path(self.root, url_path)
            mode = target.stat().st_mode
        except PathRefused as exc:
            self._send_error(HTTPStatus.FORBIDDEN, f"refused: {exc}", body=body)
            return
        except (PathNotServed, OSError):
            self._send_error(HTTPStatus.NOT_FOUND, "not found", body=body)
            return
        if stat.S_ISDIR(mode):
            self._send_folder(target, url_path, body)
        elif stat.S_ISREG(mode):
            self._send_file(target, body)
        else:  # FIFO, socket, device: opening could block or never end
            self._send_error(HTTPStatus.NOT_FOUND, "not found", body=body)

    def _send_file(self, path: Path, body: bool) -> None:
        try:
            fh = open(path, "rb")  # noqa: SIM115 - closed by the with below (only the open may fail here)
        except OSError:
            self._send_error(HTTPStatus.NOT_FOUND, "not readable", body=body)
            return
        with fh:
            stat = os.fstat(fh.fileno())
            size = stat.st_size
            headers = {
                "Content-Type": CONTENT_TYPES.get(path.suffix.lower(), DEFAULT_CONTENT_TYPE),
                "Accept-Ranges": "bytes",
                "Last-Modified": email.utils.formatdate(stat.st_mtime, usegmt=True),
                "ETag": f'"{stat.st_mtime_ns:x}-{size:x}"',
            }
            status, first, last = HTTPStatus.OK, 0, size - 1
            if (range_header := self.headers.get("Range")) is not None:
                try:
                    wanted = parse_range(range_header, size)
                except ValueError as exc:
                    self._send_error(
                        HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE, str(exc), {"Content-Range": f"bytes */{size}"}, body=body
                    )
                    return
                if wanted is not None:
                    status, (first, last) = HTTPStatus.PARTIAL_CONTENT, wanted
                    headers["Content-Range"] = f"bytes {first}-{last}/{size}"
            length = max(0, last - first + 1)
            headers["Content-Length"] = str(length)
            self._send_head(status, headers)
            if body and length:
                fh.seek(first)
                _copy_bytes(fh, self.wfile, length)

    def _send_folder(self, folder: Path, url_path: str, body: bool) -> None:
        """A listing of ``folder``, or a redirect to the URL with a trailing slash (relative links)."""
        if not url_path.endswith("/"):
            self._send_error(HTTPStatus.MOVED_PERMANENTLY, "moved", {"Location": url_path + "/"}, body=body)
            return
        try:
            entries = visible_entries(self.root, folder)
        except OSError:
            self._send_error(HTTPStatus.NOT_FOUND, "not readable", body=body)
            return
        rows = []
        for entry, is_folder in entries:
            name = entry + ("/" if is_folder else "")
            rows.append(f'<li><a href="{quote(name)}">{html.escape(name)}</a></li>')
        title = html.escape(unquote(url_path))
        page = (
            f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head>"
            f"<body><h1>{title}</h1><ul>{''.join(rows)}</ul></body></html>"
        ).encode()
        self._send_bytes(HTTPStatus.OK, page, "text/html; charset=utf-8", {}, body)

    def _send_error(self, status: HTTPStatus, message: str, headers: dict[str, str] | None = None, body: bool = True) -> None:
        self._send_bytes(status, (message + "\n").encode(), "text/plain; charset=utf-8", headers or {}, body)

    def _send_bytes(self, status: HTTPStatus, data: bytes, content_type: str, headers: dict[str, str], body: bool) -> None:
        self._send_head(status, {"Content-Type": content_type, "Content-Length": str(len(data)), **headers})
        if body:
            self.wfile.write(data)

    def _send_head(self, status: HTTPStatus, headers: dict[str, str]) -> None:
        """Status line and headers, with ``Connection: close`` when this connection ends after the answer."""
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()


def _copy_bytes(src: BinaryIO, dst: io.BufferedIOBase, length: int) -> None:
    """Copy ``length`` bytes from file ``src`` to stream ``dst`` in 1 MiB chunks."""
    remaining = length
    while remaining > 0:
        block = src.read(min(_CHUNK, remaining))
        if not block:
            break
        dst.write(block)
        remaining -= len(block)


class _Server(ThreadingHTTPServer):
    """One daemon thread per open connection (see :class:`ConnectionBudget`), ``answering`` slots."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[OutputRootHandler], max_connections: int,
                 max_per_client: int) -> None:
        #: Requests answered at once; a handler takes one when a request head is complete.
        self.answering = threading.BoundedSemaphore(max_connections)
        self._open = ConnectionBudget(OPEN_PER_SLOT * max_connections, max_per_client)
        super().__init__(address, handler)

    def process_request(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: tuple[Any, ...]
    ) -> None:
        """Serve the connection on a thread of its own if the budget allows; else answer 503 and close it."""
        assert isinstance(request, socket.socket)  # a TCP server's request is the connection's socket
        if not self._open.take(client_address[0]):
            _answer_busy(request)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except RuntimeError:  # the thread could not start: give its place back
            self._open.give_back(client_address[0])
            raise

    def process_request_thread(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: tuple[Any, ...]
    ) -> None:
        """The connection's thread; gives its place in the budget back when the connection ends."""
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._open.give_back(client_address[0])


def _answer_busy(request: socket.socket) -> None:
    """Send the fixed 503 answer without waiting: the accepting thread must never block on a client."""
    try:
        request.setblocking(False)
        request.send(_BUSY)
    except OSError:  # full buffer or gone: closing is answer enough
        pass


class _Server6(_Server):
    address_family = socket.AF_INET6


def make_server(
    root: str | os.PathLike[str],
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    idle_timeout: float | None = None,
    max_connections: int | None = None,
    header_timeout: float | None = None,
    max_per_client: int | None = None,
) -> ThreadingHTTPServer:
    """A threaded read-only server for ``root``, bound but not yet serving (port 0: any free port).

    Defaults (``None``) are the module's constants, read at call time.

    Args:
        idle_timeout: seconds a read or write may stall before the connection is closed
            (:data:`IDLE_TIMEOUT_S`).
        max_connections: requests answered at once (:data:`MAX_CONNECTIONS`).
        header_timeout: seconds within which a request head must be complete (:data:`HEADER_TIMEOUT_S`).
        max_per_client: open connections from one client address (:data:`MAX_PER_CLIENT`).

    Raises:
        InputError: ``root`` is not a folder, or a limit is not positive (or not finite).
    """
    idle_timeout = IDLE_TIMEOUT_S if idle_timeout is None else idle_timeout
    header_timeout = HEADER_TIMEOUT_S if header_timeout is None else header_timeout
    max_connections = MAX_CONNECTIONS if max_connections is None else max_connections
    max_per_client = MAX_PER_CLIENT if max_per_client is None else max_per_client
    _check_limits(idle_timeout=idle_timeout, header_timeout=header_timeout,
                  max_connections=max_connections, max_per_client=max_per_client)
    root_path = Path(root).expanduser().resolve()
    if not root_path.is_dir():
        raise InputError(f"{root}: no such directory (give the --out folder of the segment runs)")
    handler = type("BoundOutputRootHandler", (OutputRootHandler,),
                   {"root": root_path, "timeout": idle_timeout, "header_timeout": header_timeout})
    server_class = _Server6 if ":" in host else _Server
    return server_class((host, port), handler, max_connections, max_per_client)


def _check_limits(**limits: float) -> None:
    """Raise :class:`InputError` naming the first limit that is not a positive, finite number."""
    for name, value in limits.items():
        if not 0 < value < math.inf:
            option = "--" + name.replace("_", "-")
            raise InputError(f"{option} must be a positive number, not {value} (leave it out for the default)")


__all__ = [
    "make_server", "CONTENT_TYPES", "IDLE_TIMEOUT_S", "MAX_CONNECTIONS", "MAX_DISCARDED_BODY",
    "HEADER_TIMEOUT_S", "MAX_PER_CLIENT", "OPEN_PER_SLOT",
]
