"""``samgeo-pipeline serve OUTPUT_ROOT``: a read-only HTTP server for an output root.

The Prefect UI cannot open ``file://`` links, so the flows' artifacts link to this server
(``SAMGEO_OUTPUT_BASE_URL``, default ``http://127.0.0.1:8000/``). It serves files below the root
only (no ``..``, no absolute paths, no symlinks that lead outside), with the content types GIS
tools expect, and single HTTP range requests (``206`` / ``416``), so GDAL and QGIS can stream a
COG with ``/vsicurl/http://HOST:PORT/scene/mask.tif``. It binds the loopback interface unless
``--host`` says otherwise. Standard library only; it does not import Prefect.
"""

from __future__ import annotations

import argparse
import email.utils
import html
import ipaddress
import os
import re
import socket
import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, unquote

from samgeo_pipeline.errors import InputError

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
_CHUNK = 1 << 20
_RANGE = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")


class PathRefused(Exception):
    """A request path that points outside the served root (or cannot be a file name)."""


def resolve_request_path(root: Path, url_path: str) -> Path:
    """The file or folder below ``root`` that ``url_path`` names.

    Args:
        root: the served folder, already resolved (absolute, symlinks resolved).
        url_path: the path part of the request target, percent-encoded (``/scene/mask.tif``).

    Raises:
        PathRefused: ``..`` segments, an absolute path after the leading slash (``//etc``,
            ``/%2Fetc``), a backslash or NUL, or a target that resolves outside ``root``
            (through a symlink).
    """
    text = unquote(url_path)
    if "\x00" in text or "\\" in text:
        raise PathRefused("NUL or backslash in path")
    rel = text[1:] if text.startswith("/") else text
    if rel.startswith("/") or os.path.isabs(rel):
        raise PathRefused("absolute path")
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise PathRefused("'..' in path")
    target = root.joinpath(*parts).resolve()
    if target != root and root not in target.parents:
        raise PathRefused("path leads outside the served root")
    return target


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """The inclusive byte range ``(first, last)`` a ``Range`` header asks of a ``size``-byte file.

    Returns:
        None when the header is not a single ``bytes=`` range (the whole file is served then).

    Raises:
        ValueError: a malformed or unsatisfiable byte range (answered with 416).
    """
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    match = _RANGE.match(spec)
    if not match or (not match.group(1) and not match.group(2)):
        raise ValueError(f"malformed range {header!r}")
    first_text, last_text = match.groups()
    if not first_text:  # suffix range: the last N bytes
        length = int(last_text)
        if length == 0 or size == 0:
            raise ValueError("empty suffix range")
        return max(0, size - length), size - 1
    first = int(first_text)
    last = int(last_text) if last_text else size - 1
    if first > last or first >= size:
        raise ValueError(f"range {header!r} not satisfiable for {size} bytes")
    return first, min(last, size - 1)


class OutputRootHandler(BaseHTTPRequestHandler):
    """GET and HEAD on files and folders below :attr:`root`; nothing else."""

    root: Path = Path(".").resolve()
    server_version = "samgeo-pipeline-serve"
    protocol_version = "HTTP/1.1"

    def do_HEAD(self) -> None:  # noqa: N802 - http.server naming
        self._respond(body=False)

    def do_GET(self) -> None:  # noqa: N802
        self._respond(body=True)

    def _refuse_method(self) -> None:
        self._send_error(HTTPStatus.METHOD_NOT_ALLOWED, "read-only server: GET and HEAD only", {"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = _refuse_method  # noqa: N815

    def _respond(self, body: bool) -> None:
        url_path = self.path.split("?", 1)[0].split("#", 1)[0]  # not urlsplit: '//x' is no netloc here
        try:
            target = resolve_request_path(self.root, url_path)
        except PathRefused as exc:
            self._send_error(HTTPStatus.FORBIDDEN, f"refused: {exc}", body=body)
            return
        if target.is_dir():
            if not url_path.endswith("/"):
                self._send_error(HTTPStatus.MOVED_PERMANENTLY, "moved", {"Location": url_path + "/"}, body=body)
            else:
                self._send_listing(target, url_path, body)
            return
        if not target.is_file():
            self._send_error(HTTPStatus.NOT_FOUND, "not found", body=body)
            return
        self._send_file(target, body)

    def _send_file(self, path: Path, body: bool) -> None:
        try:
            fh = open(path, "rb")
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
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            if body and length:
                fh.seek(first)
                _copy_bytes(fh, self.wfile, length)

    def _send_listing(self, folder: Path, url_path: str, body: bool) -> None:
        rows = []
        for entry in sorted(folder.iterdir(), key=lambda p: (not p.is_dir(), p.name)):
            try:
                resolved = entry.resolve()
            except OSError:
                continue
            if entry.name.startswith(".") or (resolved != self.root and self.root not in resolved.parents):
                continue
            name = entry.name + ("/" if entry.is_dir() else "")
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
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if body:
            self.wfile.write(data)


def _copy_bytes(src, dst, length: int) -> None:
    """Copy ``length`` bytes from file ``src`` to stream ``dst`` in 1 MiB chunks."""
    remaining = length
    while remaining > 0:
        block = src.read(min(_CHUNK, remaining))
        if not block:
            break
        dst.write(block)
        remaining -= len(block)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Server6(_Server):
    address_family = socket.AF_INET6


def make_server(root: str | os.PathLike[str], host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    """A threaded read-only server for ``root``, bound but not yet serving (port 0: any free port).

    Raises:
        InputError: ``root`` is not a folder.
    """
    root_path = Path(root).expanduser().resolve()
    if not root_path.is_dir():
        raise InputError(f"{root}: no such directory (give the --out folder of the segment runs)")
    handler = type("BoundOutputRootHandler", (OutputRootHandler,), {"root": root_path})
    server_class = _Server6 if ":" in host else _Server
    return server_class((host, port), handler)


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def add_serve_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``samgeo-pipeline serve`` on the CLI's subparsers."""
    parser = sub.add_parser("serve", help="serve an output root over HTTP (read-only, range requests)")
    parser.add_argument("output_root", type=Path, metavar="OUTPUT_ROOT", help="folder to serve (the --out of segment)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, loopback only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0 picks a free one)")
    parser.set_defaults(handler=run_serve)
    return parser


def run_serve(args: argparse.Namespace) -> int:
    """The ``serve`` command: serve until interrupted."""
    server = make_server(args.output_root, args.host, args.port)
    host, port = server.server_address[:2]
    shown = f"[{host}]" if ":" in host else host
    if not is_loopback(args.host):
        print(f"warning: {args.host} is not a loopback address: anyone who reaches it can read the outputs",
              file=sys.stderr)
    print(f"serving {Path(args.output_root).resolve()} at http://{shown}:{port}/ (read-only; Ctrl-C stops)",
          file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


__all__ = ["make_server", "resolve_request_path", "parse_range", "add_serve_parser", "run_serve", "CONTENT_TYPES"]
