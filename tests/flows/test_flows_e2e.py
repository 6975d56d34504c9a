"""End to end, as a user runs it: Prefect server, process pool ``gpu``, deploy from
deployments/prefect.yaml, a worker, the segment deployment on a synthetic GeoTIFF with
``--model none``, outputs and artifacts read back through the API and downloaded from
``samgeo-pipeline serve``; then the watch deployment turning a dropped file into a segment run.
Worker and server are stopped by PID (SIGINT, then SIGKILL).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from samgeo_pipeline.demo import write_demo_scene

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
OPTIONS = {"model": "none", "tile_size": 256, "halo": 32}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _prefect(*args: str) -> list[str]:
    return [sys.executable, "-m", "prefect", *args]


def _stop(proc: subprocess.Popen, grace: float = 20.0) -> None:
    """SIGINT, then SIGKILL after ``grace`` seconds (also to the children of its session)."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    try:  # flow-run processes of the worker, uvicorn children of the server: same session
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class Stack:
    """A running Prefect server + worker on loopback, with the project deployed."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = _free_port()
        self.serve_port = _free_port()
        self.api = f"http://127.0.0.1:{self.port}/api"
        self.data = tmp / "data"
        self.base_url = f"http://127.0.0.1:{self.serve_port}/"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        self.env.update(
            PREFECT_HOME=str(tmp / "prefect-home"),
            PREFECT_API_URL=self.api,
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            DO_NOT_TRACK="1",
            PREFECT_SERVER_UI_ENABLED="false",
            PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED="false",  # watch runs only when the test asks
            PREFECT_WORKER_QUERY_SECONDS="2",
            PREFECT_CLI_COLORS="false",
            PYTHONUNBUFFERED="1",
            SAMGEO_DATA_DIR=str(self.data),
            SAMGEO_OUTPUT_BASE_URL=self.base_url,
        )
        self.procs: list[subprocess.Popen] = []

    def spawn(self, name: str, args: list[str], cwd: Path | None = None) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "wb")
        proc = subprocess.Popen(args, cwd=cwd or self.tmp, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs.append(proc)
        return proc

    def run(self, *args: str, timeout: float = 240) -> str:
        proc = subprocess.run(args, cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"{' '.join(args[2:])} exited {proc.returncode}:\n{out[-4000:]}"
        return out

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(self.tmp.glob("*.log")))

    def post(self, path: str, body: dict) -> list | dict:
        response = httpx.post(self.api + path, json=body, timeout=30)
        response.raise_for_status()
        return response.json()

    def wait_for(self, what: str, check, timeout: float) -> object:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(1)
        raise AssertionError(f"timed out waiting for {what}\n{self.logs()}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    started = time.monotonic()
    s = Stack(tmp_path_factory.mktemp("e2e"))
    try:
        s.spawn("server", _prefect("server", "start", "--host", "127.0.0.1", "--port", str(s.port)))

        def healthy() -> bool:
            try:
                return httpx.get(s.api + "/health", timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        s.wait_for("the Prefect server", healthy, 150)
        s.run(*_prefect("work-pool", "create", "gpu", "--type", "process"))
        out = s.run(*_prefect("--no-prompt", "deploy", "--all", "--prefect-file", "deployments/prefect.yaml"))
        assert "segment/segment" in out and "watch/watch" in out, out
        s.spawn("worker", _prefect("worker", "start", "--pool", "gpu", "--limit", "1"))
        (s.data / "outputs").mkdir(parents=True)
        s.spawn("serve", [sys.executable, "-m", "samgeo_pipeline.cli", "serve", str(s.data / "outputs"),
                          "--port", str(s.serve_port)])
        yield s
    finally:
        for proc in reversed(s.procs):  # serve, worker, then the server last
            _stop(proc)
        print(f"e2e stack: {time.monotonic() - started:.0f} s", file=sys.stderr)


def _flow_run_id(cli_output: str) -> str:
    match = re.search(r"UUID:\s*([0-9a-f-]{36})", cli_output)
    assert match, cli_output
    return match.group(1)


def test_segment_deployment_outputs_and_artifacts(stack: Stack) -> None:
    scene = write_demo_scene(stack.tmp / "scenes" / "lake.tif", 300, 400, seed=5)
    out_root = stack.data / "outputs"
    params = {"inputs": [str(scene)], "output_root": str(out_root), "options": OPTIONS}
    out = stack.run(*_prefect("deployment", "run", "segment/segment", "--params", json.dumps(params),
                              "--watch", "--watch-interval", "2", "--watch-timeout", "200"), timeout=240)
    run_id = _flow_run_id(out)
    run = httpx.get(f"{stack.api}/flow_runs/{run_id}", timeout=30).json()
    assert run["state"]["type"] == "COMPLETED", f"{run['state']}\n{stack.logs()}"
    deployment = httpx.get(f"{stack.api}/deployments/{run['deployment_id']}", timeout=30).json()
    assert deployment["work_pool_name"] == "gpu" and deployment["global_concurrency_limit"]["limit"] == 1
    assert deployment["job_variables"]["env"]["CUDA_VISIBLE_DEVICES"] == "0"
    outputs = {p.name for p in (out_root / "lake").iterdir()}
    assert {"mask.tif", "water.gpkg", "quicklook.png", "manifest.json"} <= outputs

    artifacts = stack.post("/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run_id]}}})
    table = next(a for a in artifacts if a["key"] == "segment-lake")
    row = json.loads(table["data"])[0]
    assert row["status"] == "done" and row["water area km²"] > 0 and row["polygons"] >= 1
    links = [u for a in artifacts if a["type"] == "markdown" for u in re.findall(r"\]\((http[^)]+)\)", a["data"])]
    mask_url = f"{stack.base_url}lake/mask.tif"
    assert mask_url in links and f"{stack.base_url}lake/water.gpkg" in links
    assert any(a["key"] == "segment-run-summary" for a in artifacts)

    # the links work: download through `samgeo-pipeline serve`, and stream the COG through /vsicurl/
    def get(url: str, **kw) -> httpx.Response | None:
        try:
            return httpx.get(url, timeout=10, **kw)
        except httpx.HTTPError:
            return None

    response = stack.wait_for("samgeo-pipeline serve", lambda: get(mask_url), 30)
    assert response.status_code == 200 and response.headers["content-type"] == "image/tiff"
    assert response.content == (out_root / "lake" / "mask.tif").read_bytes()
    assert get(mask_url, headers={"Range": "bytes=0-3"}).content in (b"II*\x00", b"MM\x00*")
    import rasterio

    with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"):
        with rasterio.open(f"/vsicurl/{mask_url}") as remote, rasterio.open(out_root / "lake" / "mask.tif") as local:
            assert (remote.read(1) == local.read(1)).all()


def test_watch_deployment_starts_one_segment_run_per_new_file(stack: Stack) -> None:
    incoming = stack.data / "incoming" / "site"
    incoming.mkdir(parents=True, exist_ok=True)
    write_demo_scene(incoming / "river.tif", 300, 400, seed=6)
    params = json.dumps({"options": OPTIONS})
    for _ in range(2):  # the first scan sees the file, the second finds it stable and starts a run
        out = stack.run(*_prefect("deployment", "run", "watch/watch", "--params", params,
                                  "--watch", "--watch-interval", "2", "--watch-timeout", "120"), timeout=180)
        assert "Completed" in out or "COMPLETED" in out, out

    def segment_run() -> dict | None:
        runs = stack.post("/flow_runs/filter", {"flow_runs": {"name": {"any_": ["segment-river.tif"]}}})
        done = [r for r in runs if r["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")]
        return done[0] if done else None

    run = stack.wait_for("the segment run started by the watch flow", segment_run, 200)
    assert run["state"]["type"] == "COMPLETED", f"{run['state']}\n{stack.logs()}"
    assert run["parameters"]["relative_to"] == str(stack.data / "incoming")
    assert (stack.data / "outputs" / "site" / "river" / "water.gpkg").is_file()
    stack.run(*_prefect("deployment", "run", "watch/watch", "--params", params,
                        "--watch", "--watch-interval", "2", "--watch-timeout", "120"), timeout=180)
    runs = stack.post("/flow_runs/filter", {"flow_runs": {"name": {"any_": ["segment-river.tif"]}}})
    assert len(runs) == 1  # the rescan started nothing
