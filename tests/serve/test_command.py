"""The ``serve`` command (:mod:`samgeo_pipeline.serve.command`): as a CLI subcommand and as ``python -m``."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from samgeo_pipeline.serve.command import is_loopback


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.8.9.1", True), ("::1", True), ("localhost", True),
     ("0.0.0.0", False), ("::", False), ("192.168.1.4", False), ("example.org", False), ("localhost.example.org", False)],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    """Only loopback addresses count as local (a wider bind gets the command's warning)."""
    assert is_loopback(host) is loopback


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
            assert proc.wait(timeout=60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()


def test_python_m_serve_is_the_serve_command(tmp_path: Path) -> None:
    """``python -m samgeo_pipeline.serve`` takes the serve command's arguments and errors (one line, exit 1)."""
    run = subprocess.run([sys.executable, "-m", "samgeo_pipeline.serve", str(tmp_path / "missing")],
                         capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert run.returncode == 1
    assert run.stderr.strip() == f"error: {tmp_path / 'missing'}: no such directory (give the --out folder of the segment runs)"
    assert "--max-per-client" in subprocess.run([sys.executable, "-m", "samgeo_pipeline.serve", "--help"], capture_output=True,
                                                text=True, timeout=120, cwd=Path(__file__).resolve().parents[2]).stdout
