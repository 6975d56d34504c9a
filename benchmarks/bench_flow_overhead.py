"""Overhead of the Prefect segment flow over the CLI for one small image (issue 10 item 6).

Both run in this process, warm (imports done, one untimed run each first), on a 934 x 723 demo
scene with ``--model none`` and ``overwrite`` (so neither reuses outputs): the CLI as
``samgeo_pipeline.cli.main([...])`` and the flow as ``segment_flow(...)`` against a temporary local
Prefect API (started once, not timed). Prints the best and median of ``--repeat`` runs each and
their ratio (target: flow <= 2x CLI). A deployment run adds the worker's poll interval and the
start of a Python process (imports of Prefect, torch, rasterio: ~5-10 s on a busy 2-core machine),
which no flow code can shorten; ``--profile`` prints where one flow run's time goes.

``--no-heartbeat-join`` (a diagnostic, not a setting of the library) patches Prefect in this
process so that a synchronous flow run does not wait for its heartbeat thread at the end, as
Prefect's asynchronous engine already does not: the thread sleeps in 1 s steps, so the wait is the
rest of the current second, up to 1 s.

    python benchmarks/bench_flow_overhead.py [--repeat 5] [--profile] [--no-heartbeat-join]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _setup_prefect(home: Path) -> None:
    os.environ.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1",
                      PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120", PREFECT_LOGGING_LEVEL="WARNING")
    os.environ.pop("PREFECT_API_URL", None)


def _skip_heartbeat_join() -> None:
    """Make the synchronous flow engine stop its heartbeat thread without joining it."""
    import prefect.flow_engine as engine_module

    send = engine_module._send_heartbeats

    @contextlib.contextmanager
    def without_join(engine: object, join_on_exit: bool = True):
        with send(engine, join_on_exit=False):
            yield

    engine_module._send_heartbeats = without_join


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--no-heartbeat-join", action="store_true",
                        help="diagnostic: do not wait for Prefect's heartbeat thread at the end of a run")
    args = parser.parse_args()
    if args.no_heartbeat_join:
        _skip_heartbeat_join()
    work = Path(tempfile.mkdtemp(prefix="bench-flow-"))
    _setup_prefect(work / "prefect-home")

    from samgeo_pipeline.cli import main as cli_main
    from samgeo_pipeline.demo import write_demo_scene

    scene = write_demo_scene(work / "scene.tif", 723, 934, seed=4)  # 934 wide x 723 high
    options = {"model": "none", "overwrite": True}

    def cli() -> None:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            code = cli_main(["segment", str(scene), "--out", str(work / "cli"), "--model", "none", "--overwrite"])
        assert code == 0, code

    from prefect.testing.utilities import prefect_test_harness

    from flows.segment import segment_flow

    def flow() -> None:
        summaries = segment_flow([str(scene)], str(work / "flow"), options)
        assert summaries[0]["status"] == "done", summaries

    with prefect_test_harness(server_startup_timeout=120):
        times = {}
        for name, fn in (("cli", cli), ("flow", flow)):
            fn()  # warm-up
            times[name] = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
        if args.profile:
            import cProfile
            import pstats

            profiler = cProfile.Profile()
            profiler.runcall(flow)
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
    joined = "without the heartbeat join (diagnostic)" if args.no_heartbeat_join else "Prefect as installed"
    print(f"934 x 723 scene, --model none, {args.repeat} runs each after one warm-up, {joined}, load average "
          f"{os.getloadavg()[0]:.1f}, {os.cpu_count()} CPU(s)")
    for name, values in times.items():
        print(f"  {name:4s}: best {min(values):.3f} s, median {statistics.median(values):.3f} s")
    print(f"  flow / cli: best {min(times['flow']) / min(times['cli']):.2f}x, "
          f"median {statistics.median(times['flow']) / statistics.median(times['cli']):.2f}x (target <= 2x)")


if __name__ == "__main__":
    main()
