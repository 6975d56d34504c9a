"""The ``samgeo-pipeline serve`` command line: its options and the loop that serves until Ctrl-C."""

from __future__ import annotations

import argparse
import ipaddress
import sys
from pathlib import Path

from samgeo_pipeline.serve.server import (
    HEADER_TIMEOUT_S,
    IDLE_TIMEOUT_S,
    MAX_CONNECTIONS,
    MAX_PER_CLIENT,
    OPEN_PER_SLOT,
    make_server,
)


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def add_serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Register ``samgeo-pipeline serve`` on the CLI's subparsers."""
    parser = sub.add_parser("serve", help="serve an output root over HTTP (read-only, range requests)")
    parser.add_argument("output_root", type=Path, metavar="OUTPUT_ROOT", help="folder to serve (the --out of segment)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, loopback only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0 picks a free one)")
    parser.add_argument("--idle-timeout", type=float, metavar="SECONDS",
                        help=f"close a connection whose read or write stalls this long (default: {IDLE_TIMEOUT_S:g})")
    parser.add_argument("--header-timeout", type=float, metavar="SECONDS",
                        help=f"close a connection whose request head takes longer (default: {HEADER_TIMEOUT_S:g})")
    parser.add_argument("--max-connections", type=int, metavar="N",
                        help=f"requests answered at once; more get 503 (default: {MAX_CONNECTIONS}); "
                             f"{OPEN_PER_SLOT}x as many connections may be open")
    parser.add_argument("--max-per-client", type=int, metavar="N",
                        help=f"open connections from one address; more get 503 (default: {MAX_PER_CLIENT})")
    parser.set_defaults(handler=run_serve)
    return parser


def run_serve(args: argparse.Namespace) -> int:
    """The ``serve`` command: serve until interrupted."""
    server = make_server(args.output_root, args.host, args.port,
                         idle_timeout=args.idle_timeout, max_connections=args.max_connections,
                         header_timeout=args.header_timeout, max_per_client=args.max_per_client)
    host, port = server.server_address[:2]
    assert isinstance(host, str)  # AF_INET and AF_INET6 addresses are text
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
