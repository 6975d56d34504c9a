"""End to end, as a user runs the README's fleet recipe: Prefect server, process pool ``gpu``,
deploy from deployments/prefect.yaml, the recovery automations, two workers (one per "GPU":
``CUDA_VISIBLE_DEVICES=0`` and ``=1``), the segment deployment on synthetic GeoTIFFs with
``model: none``, outputs and artifacts read back through the API and downloaded from
``samgeo-pipeline serve``; two runs at once overlapping on the two workers; the watch deployment
with a rules file turning dropped files into segment runs and retrying a failing one; last, a
``kill -9`` of a worker and its flow process, recovered by the automations on the other worker.
Workers and server are stopped by PID (SIGINT, then SIGKILL).
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
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

    def spawn(self, name: str, args: list[str], cwd: Path | None = None, **env: str) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "wb")  # noqa: SIM115 - the process's log while it lives
        proc = subprocess.Popen(args, cwd=cwd or self.tmp, env={**self.env, **env}, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs.append(proc)
        return proc

    def start_worker(self, pool: str, gpu: str | None = None) -> subprocess.Popen:
        """``prefect worker start`` as the README says: ``--limit 1`` and its own GPU in pool gpu."""
        if pool == "gpu":
            return self.spawn(f"worker{gpu}-{len(self.procs)}", _prefect("worker", "start", "--pool", "gpu", "--limit", "1"),
                              CUDA_VISIBLE_DEVICES=gpu)
        return self.spawn(f"worker-{pool}-{len(self.procs)}", _prefect("worker", "start", "--pool", pool))

    def workers(self, pool: str) -> list[subprocess.Popen]:
        """The live workers of ``pool``."""
        return [p for p in self.procs if "--pool" in p.args and p.args[p.args.index("--pool") + 1] == pool
                and p.poll() is None]

    def run(self, *args: str, timeout: float = 240) -> str:
        proc = subprocess.run(args, cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"{' '.join(args[2:])} exited {proc.returncode}:\n{out[-4000:]}"
        return out

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(self.tmp.glob("*.log")))

    def start_run(self, deployment: str, params: dict) -> str:
        """``prefect deployment run`` without waiting; returns the flow run id."""
        return _flow_run_id(self.run(*_prefect("deployment", "run", deployment, "--params", json.dumps(params))))

    def flow_run(self, run_id: str) -> dict:
        return httpx.get(f"{self.api}/flow_runs/{run_id}", timeout=30).json()

    def wait_final(self, run_id: str, timeout: float = 200) -> dict:
        final = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
        return self.wait_for(f"flow run {run_id}", lambda: (r := self.flow_run(run_id))["state"]["type"] in final and r,
                             timeout)

    def logs_of(self, run_id: str) -> str:
        rows = self.post("/logs/filter", {"logs": {"flow_run_id": {"any_": [run_id]}}, "limit": 200})
        return "\n".join(r["message"] for r in rows)

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
        # the README's recipe, command by command
        s.run(*_prefect("work-pool", "create", "gpu", "--type", "process"))
        s.run(*_prefect("work-pool", "create", "cpu", "--type", "process"))
        (s.data / "incoming").mkdir(parents=True)
        (s.data / "outputs").mkdir(parents=True)
        out = s.run(*_prefect("--no-prompt", "deploy", "--all", "--prefect-file", "deployments/prefect.yaml"))
        assert "segment/segment" in out and "watch/watch" in out, out
        out = s.run(sys.executable, "flows/recovery.py")
        assert "samgeo: crash silent runs: created" in out and "samgeo: retry crashed runs: created" in out, out
        assert "samgeo: cancel silent cancelling runs: created" in out, out
        assert "created" not in s.run(sys.executable, "flows/recovery.py")  # idempotent
        for gpu in ("0", "1"):  # one worker per GPU
            s.start_worker("gpu", gpu)
        s.start_worker("cpu")  # the watch deployment's scans
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
    # no pool-wide limit, no GPU pinned: each worker's own CUDA_VISIBLE_DEVICES applies
    assert deployment["work_pool_name"] == "gpu" and deployment["global_concurrency_limit"] is None
    assert "CUDA_VISIBLE_DEVICES" not in deployment["job_variables"]["env"]
    watch = httpx.get(f"{stack.api}/deployments/name/watch/watch", timeout=30).json()
    assert watch["work_pool_name"] == "cpu"  # a scan never takes a GPU worker's slot
    outputs = {p.name for p in (out_root / "lake").iterdir()}
    assert {"mask.tif", "water.gpkg", "quicklook.png", "manifest.json"} <= outputs
    runtime = json.loads((out_root / "lake" / "manifest.json").read_text())["runtime"]
    assert runtime["worker"].startswith("ProcessWorker ") and runtime["flow_run"] == run_id  # which worker made it
    assert runtime["cuda_visible_devices"] in ("0", "1") and runtime["device"] == "cpu"  # model: none

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
    info = json.loads(stack.run(str(Path(sys.executable).parent / "rio"), "info", f"/vsicurl/{mask_url}"))  # README, step 5
    assert info["driver"] == "GTiff" and (info["height"], info["width"]) == (300, 400) and info["dtype"] == "uint8"
    import rasterio

    with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"):
        with rasterio.open(f"/vsicurl/{mask_url}") as remote, rasterio.open(out_root / "lake" / "mask.tif") as local:
            assert (remote.read(1) == local.read(1)).all()


def _big_scene(stack: Stack, name: str) -> Path:
    """A 4000 x 4000 scene (a few seconds of segmenting with ``model: none``), copied under ``name``."""
    master = stack.tmp / "scenes" / "big.tif"
    if not master.exists():
        write_demo_scene(master, 4000, 4000, seed=7)
    target = stack.tmp / "scenes" / name
    shutil.copyfile(master, target)
    return target


def _segment_window(stack: Stack, run_id: str) -> tuple[float, float]:
    """Start and end (seconds since the epoch) of the run's segment task."""
    from datetime import datetime

    tasks = stack.post("/task_runs/filter", {"flow_runs": {"id": {"any_": [run_id]}}})
    seg = [t for t in tasks if t["name"].startswith("segment ")]
    assert len(seg) == 1, tasks
    return tuple(datetime.fromisoformat(seg[0][k]).timestamp() for k in ("start_time", "end_time"))


class _Rendezvous(http.server.ThreadingHTTPServer):
    """Serves the files of ``folder`` over http on loopback, but holds every GET until each of
    ``names`` has been asked for (or ``timeout`` seconds passed: ``met`` stays False). Runs that fetch
    one name each can only get their inputs when both are running at the same time, so the test of
    concurrency does not hang on how fast the workers happen to pick runs up."""

    def __init__(self, folder: Path, names: set[str], timeout: float = 150) -> None:
        self.asked: set[str] = set()
        self.names, self.timeout, self.met = names, timeout, False
        self.ready = threading.Condition()
        handler = functools.partial(_RendezvousHandler, directory=str(folder))
        super().__init__(("127.0.0.1", 0), handler)


class _RendezvousHandler(http.server.SimpleHTTPRequestHandler):
    server: _Rendezvous

    def do_GET(self) -> None:
        server = self.server
        with server.ready:
            server.asked.add(self.path.lstrip("/"))
            server.ready.notify_all()
            server.met = server.ready.wait_for(lambda: server.asked >= server.names, server.timeout) or server.met
        super().do_GET()

    def log_message(self, *args) -> None:
        pass


def test_two_workers_run_two_images_at_once(stack: Stack) -> None:
    names = {"east.tif", "west.tif"}
    for name in names:
        _big_scene(stack, name)
    server = _Rendezvous(stack.tmp / "scenes", names)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/"
        runs = [stack.start_run("segment/segment", {"inputs": [base + name], "output_root": str(stack.data / "outputs"),
                                                    "options": OPTIONS}) for name in sorted(names)]
        for run_id in runs:
            assert stack.wait_final(run_id)["state"]["type"] == "COMPLETED", stack.logs()
    finally:
        server.shutdown()
        server.server_close()
    assert server.met, f"one run fetched its input while the other was not running: {server.asked}"
    (a0, a1), (b0, b1) = (_segment_window(stack, r) for r in runs)
    assert max(a0, b0) < min(a1, b1), f"segment stages did not overlap: {a0:.1f}-{a1:.1f} vs {b0:.1f}-{b1:.1f}"
    devices = {re.search(r"CUDA_VISIBLE_DEVICES=(\S+)", stack.logs_of(r)).group(1) for r in runs}
    assert devices == {"0", "1"}  # each run on its own worker's GPU


def test_watch_deployment_rules_runs_and_retries(stack: Stack) -> None:
    incoming = stack.data / "incoming"
    (incoming / "site").mkdir(parents=True, exist_ok=True)
    # the one documented place for per-file options, read by the deployment as deployed
    (stack.data / "watch.yaml").write_text(
        "ready: rename\nretries: 1\nretry_backoff_seconds: 0\n"
        "defaults: {model: none, tile_size: 256, halo: 32}\n"
        "rules:\n  - name: too-big\n    match: {pattern: 'site/huge*'}\n    options: {max_pixels: 1000}\n")
    write_demo_scene(incoming / "site" / "river.tif", 300, 400, seed=6)
    write_demo_scene(incoming / "site" / "huge.tif", 300, 400, seed=8)  # fails: over its max_pixels

    def scan() -> None:
        out = stack.run(*_prefect("deployment", "run", "watch/watch", "--watch", "--watch-interval", "2",
                                  "--watch-timeout", "120"), timeout=180)
        assert "Completed" in out or "COMPLETED" in out, out

    def segment_runs(name: str, count: int) -> list[dict] | None:
        runs = stack.post("/flow_runs/filter", {"flow_runs": {"name": {"any_": [name]}}})
        done = [r for r in runs if r["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")]
        return done if len(done) >= count else None

    scan()  # ready: rename => both files start at once
    river = stack.wait_for("the river run", lambda: segment_runs("segment-river.tif", 1), 200)[0]
    assert river["state"]["type"] == "COMPLETED", f"{river['state']}\n{stack.logs()}"
    assert river["parameters"]["relative_to"] == str(incoming)
    assert river["parameters"]["bands_source"] == "descriptions"
    assert (stack.data / "outputs" / "site" / "river" / "water.gpkg").is_file()
    stack.wait_for("the first huge run", lambda: segment_runs("segment-huge.tif", 1), 200)
    scan()  # huge failed: retried (back-off 0)
    huge = stack.wait_for("the second huge run", lambda: segment_runs("segment-huge.tif", 2), 200)
    assert {r["state"]["type"] for r in huge} == {"FAILED"}
    scan()  # failed again: retries spent, listed
    artifacts = stack.post("/artifacts/filter", {"artifacts": {"key": {"any_": ["watch-failed"]}},
                                                 "sort": "CREATED_DESC", "limit": 1})
    assert "huge.tif` | 2 | gave up |" in artifacts[0]["data"] and "max-pixels" in artifacts[0]["data"].lower()
    assert len(stack.post("/flow_runs/filter", {"flow_runs": {"name": {"any_": ["segment-river.tif"]}}})) == 1


def _flow_process(stack: Stack, run_id: str, pool: str):
    """``(worker, flow process)`` of the worker of ``pool`` that started ``run_id``, or None."""
    import psutil

    for worker in stack.workers(pool):
        for child in psutil.Process(worker.pid).children(recursive=True):
            try:
                if child.environ().get("PREFECT__FLOW_RUN_ID") == run_id:
                    return worker, child
            except psutil.Error:  # exited meanwhile
                continue
    return None


def _kill9(stack: Stack, worker: subprocess.Popen) -> float:
    """``kill -9`` of a worker and every process below it, then a new worker in its place (same
    pool and GPU), as a process manager does; returns the time of the kill (``time.time()``)."""
    import psutil

    pool = worker.args[worker.args.index("--pool") + 1]
    gpu = psutil.Process(worker.pid).environ().get("CUDA_VISIBLE_DEVICES")
    for proc in [*psutil.Process(worker.pid).children(recursive=True), psutil.Process(worker.pid)]:
        proc.kill()
    worker.wait(timeout=10)
    killed = time.time()
    stack.start_worker(pool, gpu)
    return killed


def _poll(what: str, check, timeout: float, stack: Stack, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}\n{stack.logs()}")


def _states(stack: Stack, run_id: str) -> list[dict]:
    rows = httpx.get(f"{stack.api}/flow_run_states/", params={"flow_run_id": run_id}, timeout=30).json()
    return sorted(rows, key=lambda r: r["timestamp"])


def _crashed_at(stack: Stack, run_id: str) -> float | None:
    """When the run was first marked Crashed (seconds since the epoch), or None."""
    from datetime import datetime

    crashed = [r for r in _states(stack, run_id) if r["type"] == "CRASHED"]
    return datetime.fromisoformat(crashed[0]["timestamp"]).timestamp() if crashed else None


def _slot_taken(stack: Stack, run_id: str) -> float:
    """When the run's segment stage got its ``gpu`` slot (its log line; seconds since the epoch)."""
    from datetime import datetime

    def taken() -> list[dict]:  # a flow process ships its logs in batches, maybe after its final state
        rows = stack.post("/logs/filter", {"logs": {"flow_run_id": {"any_": [run_id]}}, "limit": 200})
        return [r for r in rows if "holding a slot of 'gpu'" in r["message"]]

    found = _poll(f"the slot log line of {run_id}", taken, 30, stack, 1)
    assert len(found) == 1, found
    return datetime.fromisoformat(found[0]["timestamp"]).timestamp()


def _gpu_slots(stack: Stack) -> int | None:
    response = httpx.get(f"{stack.api}/v2/concurrency_limits/gpu", timeout=30)
    return response.json()["active_slots"] if response.status_code == 200 else None


def _kill_while_starting(stack: Stack, deployment: str, params: dict, pool: str) -> tuple[str, float]:
    """Start a run of ``deployment`` and ``kill -9`` its worker and flow process while the run is
    ``Pending`` (the worker has started the flow process, which has not reported ``Running``
    yet); a run that got past its start-up before the poll saw it is left to finish and another
    is started (3 tries). Returns the killed run's id and the time of the kill."""
    for _ in range(3):
        run_id = stack.start_run(deployment, params)

        def pending_process(run_id: str = run_id):
            state = stack.flow_run(run_id)["state"]["type"]
            if state not in ("SCHEDULED", "PENDING"):
                return "missed"
            return (_flow_process(stack, run_id, pool) or False) if state == "PENDING" else False

        found = _poll(f"{run_id} starting", pending_process, 120, stack)
        if found != "missed":
            return run_id, _kill9(stack, found[0])
        stack.wait_final(run_id, 120)  # a watch scan holds its deployment's only slot until it ends
    raise AssertionError(f"three runs of {deployment} passed their start-up before the poll saw them")


def test_runs_killed_while_starting_are_crashed_retried_and_free_their_slots(stack: Stack) -> None:
    """A segment run and a watch scan whose workers and flow processes are killed while the flow
    process starts (state Pending, no heartbeat sent yet): both marked Crashed within two minutes,
    the segment run done again, and the watch deployment's only slot free for the next scan."""
    seg, seg_killed = _kill_while_starting(stack, "segment/segment", {
        "inputs": [str(_big_scene(stack, "early.tif"))], "output_root": str(stack.data / "outputs"),
        "options": OPTIONS}, "gpu")
    scan, scan_killed = _kill_while_starting(stack, "watch/watch", {}, "cpu")
    killed = {seg: seg_killed, scan: scan_killed}
    for run_id in (seg, scan):
        crashed = _poll(f"{run_id} marked crashed", functools.partial(_crashed_at, stack, run_id), 150, stack, 1)
        types = [r["type"] for r in _states(stack, run_id)]
        assert "RUNNING" not in types[:types.index("CRASHED")], types  # it died while starting
        assert crashed - killed[run_id] < 120, f"crashed {crashed - killed[run_id]:.0f} s after the kill"
        print(f"killed while starting: crashed after {crashed - killed[run_id]:.0f} s", file=sys.stderr)
    final = _poll("the rescheduled segment run", lambda: (r := stack.flow_run(seg))["state"]["type"] in
                  ("COMPLETED", "FAILED") and r, 200, stack, 1)
    assert final["state"]["type"] == "COMPLETED", f"{final['state']}\n{stack.logs()}"
    assert (stack.data / "outputs" / "early" / "mask.tif").is_file()
    assert stack.flow_run(scan)["state"]["type"] == "CRASHED"  # a scan is not retried: the next one comes
    after = stack.wait_final(stack.start_run("watch/watch", {}), 120)
    assert after["state"]["type"] == "COMPLETED", after["state"]  # not "Deployment concurrency limit reached"


def test_run_killed_holding_the_gpu_limit_frees_its_slot(stack: Stack) -> None:
    """With ``gpu_limit``: a run killed in its segment stage while it holds the server-wide ``gpu``
    slot; the slot's lease runs out within ~75 s, so a second run gets the slot well within two
    minutes of the kill (Prefect's default lease: 300 s), and the killed run is done again."""
    def params(name: str) -> dict:
        return {"inputs": [str(_big_scene(stack, name))], "output_root": str(stack.data / "outputs"),
                "options": OPTIONS, "gpu_limit": "gpu"}

    first = stack.start_run("segment/segment", params("held.tif"))
    found = _poll("the run to hold the gpu slot", lambda: _gpu_slots(stack) == 1 and _flow_process(stack, first, "gpu"),
                  150, stack)
    killed = _kill9(stack, found[0])
    second = stack.start_run("segment/segment", params("next.tif"))
    assert stack.wait_final(second, 200)["state"]["type"] == "COMPLETED", stack.logs()
    waited = _slot_taken(stack, second) - killed
    assert waited < 120, f"the next run got the gpu slot {waited:.0f} s after the kill"
    crashed = _poll("the killed run marked crashed", lambda: _crashed_at(stack, first), 150, stack, 1)
    assert crashed - killed < 120
    final = _wait_rerun(stack, first)
    assert final["state"]["type"] == "COMPLETED", f"{final['state']}\n{stack.logs()}"
    tasks = stack.post("/task_runs/filter", {"flow_runs": {"id": {"any_": [first]}}})
    states = [t["state"]["type"] for t in tasks]  # the dead attempt's segment task: Crashed, not Running for good
    assert "CRASHED" in states and not {"RUNNING", "PENDING"} & set(states), [(t["name"], t["state"]["type"]) for t in tasks]
    assert _gpu_slots(stack) == 0
    print(f"gpu slot: crashed after {crashed - killed:.0f} s, next run got the slot after {waited:.0f} s",
          file=sys.stderr)


def test_run_left_cancelling_by_a_dead_worker_ends_cancelled_not_retried(stack: Stack) -> None:
    """A run whose worker and flow process are killed, then cancelled (state Cancelling, nobody
    left to stop it): it ends Cancelled within two minutes, is never marked Crashed, never rescheduled."""
    run_id = stack.start_run("segment/segment", {"inputs": [str(_big_scene(stack, "cancel.tif"))],
                                                 "output_root": str(stack.data / "outputs"), "options": OPTIONS})
    found = _poll("the run's flow process", lambda: stack.flow_run(run_id)["state"]["type"] == "RUNNING"
                  and _flow_process(stack, run_id, "gpu"), 150, stack)
    killed = _kill9(stack, found[0])
    stack.run(*_prefect("flow-run", "cancel", run_id))
    final = _poll("the run to end", lambda: (r := stack.flow_run(run_id))["state"]["type"] in
                  ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") and r, 150, stack, 1)
    assert final["state"]["type"] == "CANCELLED", final["state"]
    types = [r["type"] for r in _states(stack, run_id)]
    assert "CANCELLING" in types and "CRASHED" not in types and types[-1] == "CANCELLED", types
    assert time.time() - killed < 120 and final["run_count"] == 1
    print(f"cancelling run of a dead worker: cancelled after {time.time() - killed:.0f} s", file=sys.stderr)


def test_killed_worker_run_is_crashed_retried_and_cleaned(stack: Stack) -> None:
    """Last test: it kills one of the two workers."""
    import psutil

    out_root = stack.data / "outputs"
    run_id = stack.start_run("segment/segment", {"inputs": [str(_big_scene(stack, "crash.tif"))],
                                                 "output_root": str(out_root), "options": OPTIONS})
    stack.wait_for("the run to start", lambda: stack.flow_run(run_id)["state"]["type"] == "RUNNING", 120)
    workers = stack.workers("gpu")
    busy = [w for w in workers if psutil.Process(w.pid).children(recursive=True)]
    assert len(busy) == 1, [w.pid for w in workers]
    for proc in [*psutil.Process(busy[0].pid).children(recursive=True), psutil.Process(busy[0].pid)]:
        proc.kill()  # kill -9 of the flow process and its worker
    killed = time.monotonic()
    # a temporary file as the killed run leaves it mid-write (whether or not it got that far): hidden, never served
    leftover = out_root / "crash" / ".mask.tif.partial-killed.tif"
    leftover.parent.mkdir(parents=True, exist_ok=True)
    leftover.write_bytes(b"half a mask")
    assert httpx.get(f"{stack.base_url}crash/{leftover.name}", timeout=10).status_code == 404

    def state_types() -> list[str]:
        rows = httpx.get(f"{stack.api}/flow_run_states/", params={"flow_run_id": run_id}, timeout=30).json()
        return [r["type"] for r in rows]

    stack.wait_for("the automation to mark the run crashed", lambda: "CRASHED" in state_types(), 150)
    detected = time.monotonic() - killed
    final = _wait_rerun(stack, run_id)
    assert final["state"]["type"] == "COMPLETED", f"{final['state']}\n{stack.logs()}"
    assert final["run_count"] == 2  # rescheduled by the automation, run again by the other worker
    assert (out_root / "crash" / "mask.tif").is_file()
    assert not [p.name for p in (out_root / "crash").iterdir() if ".partial-" in p.name or ".work-" in p.name]
    print(f"crash detected after {detected:.0f} s, re-run done after {time.monotonic() - killed:.0f} s",
          file=sys.stderr)


def _wait_rerun(stack: Stack, run_id: str) -> dict:
    def done() -> dict | None:
        run = stack.flow_run(run_id)
        return run if run["run_count"] > 1 and run["state"]["type"] in ("COMPLETED", "FAILED") else None

    return stack.wait_for("the rescheduled run", done, 200)
