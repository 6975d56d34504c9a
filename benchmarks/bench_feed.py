"""Feeding the GPU: CPU core-ms per SAM tile of everything but the model (target <= 35 core-ms).

The pipeline (:func:`samgeo_pipeline.run.image.segment_raster`, the real one) runs on the cached
8192² NAIP-like benchmark scene with SAM replaced by a zero-cost stand-in (:class:`StubPredictor`:
``embed`` and the decoder return at once, no torch compute). The stand-in's masks are the tiles'
coarse masks, computed before the timing, so the mask, the polygons and the quicklook hold what a
SAM run would roughly give. What is left is what the CPU must do per tile that goes to SAM: read,
composite, coarse mask, prompts, write the cores, plus the per-image stages (statistics, COG,
polygons, quicklook).

CPU time is ``getrusage(RUSAGE_SELF)`` user + sys (every thread of the process, GDAL's included)
over the whole ``segment_raster`` call, divided by the tiles that went to SAM. Per stage, the
pipeline's stage functions are wrapped (:func:`install_clocks`, whichever of them the library
has): the per-image stages (inspect + checksum, statistics, COG, polygons, quicklook) by process
CPU time while they run, the tile stage's parts (read, composite, coarse mask, prompts, writing
cores) by the CPU time of the thread running them (``CLOCK_THREAD_CPUTIME_ID``), summed over the
reader threads; "tile stage (all)" is the whole run minus the per-image stages. Each figure is
the best of ``--repeat`` runs (the page cache is warmed first).

Printed: core-ms per SAM tile, whole run and per stage; the SAM tiles/s that 8, 16 and 32 cores
would feed at that cost (cores x 1000 / core-ms, i.e. perfect scaling); the scaling measured here
with 1 and 2 reader workers (wall seconds and SAM tiles/s); and ``--model none`` whole run vs a bare
windowed read of the same file (as ``bench_throughput.py``).

``--before DIR`` measures a second copy of the library side by side (e.g. a ``git worktree`` of
an older commit): the measurement runs in child processes with ``PYTHONPATH=DIR`` and with this
checkout (or ``--after DIR``), alternately, ``--rounds`` times each, and one table shows both
(each column names the library it imported).

Usage::

    python benchmarks/bench_feed.py                       # this checkout, 8192² deflate scene
    python benchmarks/bench_feed.py --before /tmp/feed_before --rounds 2
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
TARGET_CORE_MS = 35.0
GPU_TILES_PER_S = 450.0
CORES = (8, 16, 32)
COG_AND_POLYGONS = "COG and polygons"
SAM_INPUT_SIDE = 1024


# --------------------------------------------------------------------------------------------------
# The stand-in model


def prompt_key(prompts: list) -> bytes:
    """A cheap key of a tile's prompts (deterministic per tile and seed)."""
    first = prompts[0]
    coords = first.box_xyxy if first.box_xyxy is not None else first.points_xy
    return b"%d:%d:" % (len(prompts), first.area) + np.asarray(coords, np.float32).tobytes()


class StubPredictor:
    """:class:`samgeo_pipeline.sam.predictor.SamPredictor`'s interface with no model behind it.

    ``embed`` returns placeholder embeddings at once; the decoder returns the mask registered for
    the tile's prompts (its coarse mask, from :meth:`register`), else no water. Nothing here
    depends on the tile size beyond the arrays' shapes.
    """

    autocast_dtype = None

    def __init__(self, image_size: int = 1024) -> None:
        import torch

        self.device = torch.device("cpu")
        self.image_size = image_size
        self.logits: dict[bytes, np.ndarray] = {}
        self.masks: dict[bytes, np.ndarray] = {}
        self.misses = 0

    def register(self, prompts: list, coarse: np.ndarray) -> None:
        self.masks[prompt_key(prompts)] = coarse.copy()
        self.logits[prompt_key(prompts)] = np.where(coarse, np.float32(4.0), np.float32(-4.0))

    # the interface of SamPredictor ---------------------------------------------------------------
    def embed(self, tiles) -> tuple[np.ndarray, tuple[int, int]]:
        """``tiles``: ``uint8 (batch, rows, cols, 3)`` or a sequence of ``(rows, cols, 3)``."""
        return np.arange(len(tiles)), tuple(tiles[0].shape[:2])

    def predict_logits(self, embedding, prompts, tile_shape, resized, merge="joint") -> np.ndarray:
        found = self.logits.get(prompt_key(prompts))
        if found is None:
            self.misses += 1
            return np.full(tile_shape, -4.0, np.float32)
        return found

    def predict_masks(self, embeddings, prompts_per_tile, tile_shape, resized, merge="joint", logits=False):
        """Batched decoder: one water mask (``bool (rows, cols)``) per tile, or logits when asked."""
        out = []
        for prompts in prompts_per_tile:
            table = self.logits if logits else self.masks
            found = table.get(prompt_key(prompts))
            if found is None:
                self.misses += 1
                found = np.full(tile_shape, -4.0, np.float32) if logits else np.zeros(tile_shape, bool)
            out.append(found)
        return out


# --------------------------------------------------------------------------------------------------
# Stage clocks


def process_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


class StageClock:
    """CPU seconds per stage.

    ``process``: process CPU time (every thread) while a stage runs, for the per-image stages.
    Functions wrapped with the same span name count once while any of them runs (were they to
    overlap on several threads, nothing would be counted twice).
    ``thread``: CPU time of the calling thread, summed over threads (the tile stage's parts).
    """

    def __init__(self) -> None:
        self.process: dict[str, float] = defaultdict(float)
        self.thread: dict[str, float] = defaultdict(float)
        self.lock = threading.Lock()
        self.active: dict[str, int] = defaultdict(int)
        self.started: dict[str, float] = {}
        self.undo: list[tuple[object, str, object]] = []

    def _patch(self, owner: object, name: str, wrapper_of) -> None:
        original = getattr(owner, name, None)
        if original is None:
            return
        self.undo.append((owner, name, original))
        setattr(owner, name, wrapper_of(original))

    def _enter(self, span: str) -> None:
        with self.lock:
            if self.active[span] == 0:
                self.started[span] = process_cpu()
            self.active[span] += 1

    def _exit(self, span: str) -> None:
        with self.lock:
            self.active[span] -= 1
            if self.active[span] == 0:
                self.process[span] += process_cpu() - self.started.pop(span)

    def wrap(self, owner: object, name: str, span: str | None = None, part: str | None = None) -> None:
        """Count ``owner.name``'s calls in process span ``span`` and/or thread part ``part``."""

        def wrapper_of(fn):
            @functools.wraps(fn)
            def wrapped(*args, **kwargs):
                if span:
                    self._enter(span)
                c = time.thread_time()
                try:
                    return fn(*args, **kwargs)
                finally:
                    d = time.thread_time() - c
                    if part:
                        with self.lock:
                            self.thread[part] += d
                    if span:
                        self._exit(span)

            return wrapped

        self._patch(owner, name, wrapper_of)

    def restore(self) -> None:
        for owner, name, original in reversed(self.undo):
            setattr(owner, name, original)
        self.undo.clear()


def stage_modules() -> list[Any]:
    """The library modules that call the stages: ``pipeline``, and ``reader`` / ``sink`` where the
    library has split them out of it."""
    import importlib

    import samgeo_pipeline

    package = Path(samgeo_pipeline.__file__).parent  # (an editable install could find another copy's)
    layouts = ("pipeline", "reader", "sink",  # the flat package (before the subpackages)
               "run/image", "run/image_stats", "run/prepare", "run/sink", "run/tiles")
    names = [name for name in layouts if (package / f"{name}.py").is_file()]
    return [importlib.import_module("samgeo_pipeline." + name.replace("/", ".")) for name in names]


def find(name: str, *names: str) -> Any:
    """The first of ``name``, ``names`` that a stage module has (None if none has)."""
    for module in stage_modules():
        for candidate in (name, *names):
            if hasattr(module, candidate):
                return getattr(module, candidate)
    return None


def install_clocks() -> StageClock:
    """Wrap the stage functions the library calls (whichever of them this library version has,
    in whichever module calls them)."""
    clock = StageClock()
    for module in stage_modules():
        for name in ("read_decimated", "stats_from_array", "preview_rgb"):
            clock.wrap(module, name, span="statistics")
        for name in ("file_sha256", "inspect_raster"):
            clock.wrap(module, name, span="inspect + checksum")
        # the COGs and the polygons may overlap (a second thread): one span for both, the
        # polygons' own thread CPU apart (GDAL's polygonize is single-threaded)
        clock.wrap(module, "write_polygons", span=COG_AND_POLYGONS, part="polygons")
        clock.wrap(module, "write_quicklook", span="quicklook")
        # parts of the tile stage, per thread
        for name in ("read_tile", "read_tile_native", "as_float32"):
            clock.wrap(module, name, part="read")
        clock.wrap(module, "to_rgb8", part="composite")
        clock.wrap(module, "apply_rule", part="coarse mask")
        clock.wrap(module, "prompts_for", part="prompts")
    sink = find("_TileSink", "TileSink")
    for name in ("finish", "make_cogs"):
        clock.wrap(sink, name, span=COG_AND_POLYGONS)
    clock.wrap(sink, "write", part="write cores")
    return clock


# --------------------------------------------------------------------------------------------------
# Measurement (runs in the process whose library is measured)


def build_stub(path: Path, config: Any) -> tuple[StubPredictor, int]:
    """The stand-in, with every SAM tile's coarse mask registered under its prompts."""
    import rasterio

    from samgeo_pipeline.io.gdal_env import gdal_env
    from samgeo_pipeline.io.raster import inspect_raster
    from samgeo_pipeline.io.tiling import make_grid
    from samgeo_pipeline.water.radiometry import compute_stats

    stub = StubPredictor(config.tile_size)
    prepare_tile = find("prepare_tile")
    info = inspect_raster(path, config.bands, config.nodata)
    n = 0
    with gdal_env(), rasterio.open(path) as ds:
        stats = compute_stats(ds, info, config)
        for tile in make_grid(info, config):
            prepared = prepare_tile(ds, info, stats, tile, config)
            if prepared.prompts and prepared.valid.any():
                stub.register(prepared.prompts, prepared.coarse)
                n += 1
    return stub, n


def run_once(path: Path, out: Path, config: Any, predictor: Any, clocks: bool) -> dict[str, Any]:
    from samgeo_pipeline.run import image as pipeline

    clock = install_clocks() if clocks else None
    shutil.rmtree(out, ignore_errors=True)
    try:
        c0, t0 = process_cpu(), time.perf_counter()
        result = pipeline.segment_raster(path, out, config, predictor)
        cpu, wall = process_cpu() - c0, time.perf_counter() - t0
    finally:
        if clock is not None:
            clock.restore()
    record = {
        "cpu": cpu,
        "wall": wall,
        "seconds": dict(result.seconds),
        "sam": result.tiles.sam,
        "tiles": result.tiles.total,
        "status": result.status,
    }
    if clock is not None:
        record["process"] = dict(clock.process)
        record["thread"] = dict(clock.thread)
    with open(out / "mask.tif", "rb") as f:
        import hashlib

        record["mask_sha256"] = hashlib.sha256(f.read()).hexdigest()[:16]
    return record


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Every figure of this benchmark for the library this process imports."""
    import samgeo_pipeline
    from samgeo_pipeline.config import SegmentConfig
    from samgeo_pipeline.io.gdal_env import gdal_env
    from samgeo_pipeline.io.raster import inspect_raster
    from samgeo_pipeline.io.tiling import make_grid

    sys.path.insert(0, str(BENCH_DIR))
    from _common import cached_scene
    from bench_throughput import bare_read_seconds
    from bench_tiling import model_px_per_image_px

    compress = None if args.compress == "none" else args.compress
    path = cached_scene(f"scene_{args.size}_{args.compress}.tif", args.size, args.size, compress=compress)
    base = SegmentConfig(model="facebook/sam-vit-base", tile_size=args.tile_size, halo=args.halo,
                         batch_size=args.batch_size, device="cpu", overwrite=True, progress=False)
    stub, n_sam = build_stub(path, base)
    info = inspect_raster(path, base.bands, base.nodata)
    grid = make_grid(info, base)
    work = Path(tempfile.mkdtemp(prefix="samgeo-bench-feed-"))
    out: dict[str, Any] = {"library": str(Path(samgeo_pipeline.__file__).resolve().parent), "scene": str(path),
                           "size": args.size, "registered": n_sam, "cpus": os.cpu_count(),
                           "image_px": info.height * info.width,
                           "model_px_per_image_px": model_px_per_image_px(grid, info.height, info.width)}
    try:
        with gdal_env():
            bare_read_seconds(info, grid)  # page cache warm-up
            out["bare_read"] = min(bare_read_seconds(info, grid) for _ in range(args.repeat))
        runs = [run_once(path, work / "sam", base, stub, clocks=True) for _ in range(args.repeat)]
        out["default_workers"] = runs
        for workers in args.workers:
            config = base.merged({"read_workers": workers})
            out[f"workers_{workers}"] = [run_once(path, work / "sam", config, stub, clocks=False)
                                         for _ in range(args.repeat)]
        none = SegmentConfig(model="none", tile_size=args.tile_size, halo=args.halo, overwrite=True, progress=False)
        out["model_none"] = [run_once(path, work / "none", none, None, clocks=False) for _ in range(args.repeat)]
        out["stub_misses"] = stub.misses
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


# --------------------------------------------------------------------------------------------------
# Summaries and printing


def summarise(m: dict[str, Any]) -> dict[str, Any]:
    """Best-of figures from one or more merged measurements."""
    runs = m["default_workers"]
    sam = runs[0]["sam"]
    best = min(runs, key=lambda r: r["cpu"])
    s: dict[str, Any] = {"sam": sam, "tiles": runs[0]["tiles"], "library": m["library"]}
    s["image_mp"] = m["image_px"] / 1e6
    s["model_mp_per_image_mp"] = m["model_px_per_image_px"]  # every tile sent to SAM
    s["sam_mp_per_image_mp"] = sam * SAM_INPUT_SIDE**2 / m["image_px"]  # the tiles actually sent
    s["core_ms"] = 1e3 * best["cpu"] / sam
    s["wall"] = min(r["wall"] for r in runs)
    stages: dict[str, float] = {}
    for key in {k for r in runs for k in r.get("process", {})}:
        stages[key] = min(r.get("process", {}).get(key, 0.0) for r in runs)
    for key in {k for r in runs for k in r.get("thread", {})} - {"polygons"}:
        stages["tile: " + key] = min(r.get("thread", {}).get(key, 0.0) for r in runs)
    if COG_AND_POLYGONS in stages:  # split by the polygons' own thread CPU
        both = stages.pop(COG_AND_POLYGONS)
        stages["polygons"] = min(r.get("thread", {}).get("polygons", 0.0) for r in runs)
        stages["COG"] = min(r["process"][COG_AND_POLYGONS] - r["thread"].get("polygons", 0.0) for r in runs
                            if COG_AND_POLYGONS in r.get("process", {}))  # fmt: skip
        stages["COG and polygons"] = both
    # the tile stage as a whole: what no per-image stage took
    per_image = sum(v for k, v in best.get("process", {}).items())
    stages["tile stage (all)"] = best["cpu"] - per_image
    s["stages_ms"] = {k: 1e3 * v / sam for k, v in stages.items()}
    for key in [k for k in m if k.startswith("workers_")]:
        wr = m[key]
        s[key] = {
            "wall": min(r["wall"] for r in wr),
            "tiles_wall": min(r["seconds"]["tiles"] for r in wr),
            "core_ms": 1e3 * min(r["cpu"] for r in wr) / sam,
        }
    none = m["model_none"]
    s["none_wall"] = min(r["seconds"]["total"] for r in none)
    s["none_tiles"] = min(r["seconds"]["tiles"] for r in none)
    s["bare_read"] = m["bare_read"]
    s["mask_sha256"] = {r["mask_sha256"] for r in runs}
    s["none_mask_sha256"] = {r["mask_sha256"] for r in none}
    s["misses"] = m.get("stub_misses", 0)
    return s


def merge(measurements: list[dict[str, Any]]) -> dict[str, Any]:
    """Several rounds of the same library: their runs pooled."""
    merged = dict(measurements[0])
    for m in measurements[1:]:
        for key, value in m.items():
            if isinstance(value, list):
                merged[key] = merged[key] + value
        merged["bare_read"] = min(merged["bare_read"], m["bare_read"])
    return merged


STAGE_ORDER = ["inspect + checksum", "statistics", "tile stage (all)", "tile: read", "tile: composite",
               "tile: coarse mask", "tile: prompts", "tile: write cores", "COG", "polygons", "COG and polygons",
               "quicklook"]


def table_rows(summaries: list[dict[str, Any]]) -> list[list[str]]:
    def fmt(v: float | None, spec: str = ".1f") -> str:
        return "–" if v is None else format(v, spec)

    rows = []
    rows.append(["SAM tiles / tiles", *[f"{s['sam']} / {s['tiles']}" for s in summaries]])
    rows.append(["SAM input MP per image MP, SAM tiles / all tiles",
                 *[f"{s['sam_mp_per_image_mp']:.2f} / {s['model_mp_per_image_mp']:.2f}" for s in summaries]])
    rows.append(["whole run, CPU core-ms per SAM tile", *[fmt(s["core_ms"]) for s in summaries]])
    keys = [k for k in STAGE_ORDER if any(k in s["stages_ms"] for s in summaries)]
    keys += sorted({k for s in summaries for k in s["stages_ms"]} - set(keys))
    for k in keys:
        rows.append([f"  {k}", *[fmt(s["stages_ms"].get(k)) for s in summaries]])
    for cores in CORES:
        rows.append([f"SAM tiles/s (image MPix/s) {cores} cores would feed",
                     *[f"{cores * 1e3 / s['core_ms']:.0f} ({cores * 1e3 / s['core_ms'] * s['image_mp'] / s['sam']:.0f})"
                       for s in summaries]])
    workers = sorted({k for s in summaries for k in s if k.startswith("workers_")}, key=lambda k: int(k[8:]))
    for k in workers:
        n = k[8:]
        rows.append([f"{n} worker(s): whole run s / tile stage s",
                     *[f"{s[k]['wall']:.2f} / {s[k]['tiles_wall']:.2f}" if k in s else "–" for s in summaries]])
        rows.append([f"{n} worker(s): SAM tiles/s, tile stage / whole run (whole run image MPix/s)",
                     *[f"{s['sam'] / s[k]['tiles_wall']:.0f} / {s['sam'] / s[k]['wall']:.0f} "
                       f"({s['image_mp'] / s[k]['wall']:.1f})" if k in s else "–" for s in summaries]])
    if len(workers) >= 2:
        a, b = workers[0], workers[-1]
        rows.append([f"speed-up {b[8:]} vs {a[8:]} workers, tile stage / whole run",
                     *[f"{s[a]['tiles_wall'] / s[b]['tiles_wall']:.2f}x / {s[a]['wall'] / s[b]['wall']:.2f}x"
                       for s in summaries]])
    rows.append(["--model none whole run s / bare read s",
                 *[f"{s['none_wall']:.2f} / {s['bare_read']:.2f}" for s in summaries]])
    rows.append(["--model none vs bare read, tile stage / whole run",
                 *[f"{s['bare_read'] / s['none_tiles']:.2f}x / {s['bare_read'] / s['none_wall']:.2f}x"
                   for s in summaries]])
    rows.append(["mask.tif sha256 (SAM stub / none)",
                 *[f"{','.join(sorted(s['mask_sha256']))} / {','.join(sorted(s['none_mask_sha256']))}"
                   for s in summaries]])
    return rows


def report(summaries: list[dict[str, Any]], labels: list[str]) -> None:
    from _common import fmt_table

    for label, s in zip(labels, summaries, strict=True):
        print(f"{label}: library {s['library']}" + (f", stub misses {s['misses']}" if s["misses"] else ""))
    print()
    print(fmt_table(["", *labels], table_rows(summaries)))
    print()
    for label, s in zip(labels, summaries, strict=True):
        ok = s["core_ms"] <= TARGET_CORE_MS
        ratio = s["bare_read"] / s["none_wall"]
        print(f"{label}: {s['core_ms']:.1f} core-ms per SAM tile (target <= {TARGET_CORE_MS:.0f}: "
              f"{'meets' if ok else 'MISSES'}; 16 cores feed {16e3 / s['core_ms']:.0f} tiles/s vs "
              f"{GPU_TILES_PER_S:.0f} wanted); --model none whole run {ratio:.2f}x bare read "
              f"(target >= 0.5: {'meets' if ratio >= 0.5 else 'MISSES'})")


def child(args: argparse.Namespace, library: Path | None) -> dict[str, Any]:
    """Measure in a child process whose ``PYTHONPATH`` puts ``library`` (None: this checkout) first,
    then the caller's (e.g. a ``sitecustomize`` that hides an editable install of another checkout)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(library or REPO), os.environ.get("PYTHONPATH")]))
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        json_path = Path(f.name)
    argv = [sys.executable, str(Path(__file__).resolve()), "--child-json", str(json_path),
            "--size", str(args.size), "--compress", args.compress, "--tile-size", str(args.tile_size),
            "--halo", str(args.halo), "--batch-size", str(args.batch_size), "--repeat", str(args.repeat),
            "--workers", ",".join(map(str, args.workers))]
    try:
        subprocess.run(argv, env=env, check=True)
        return json.loads(json_path.read_text())
    finally:
        json_path.unlink(missing_ok=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8192, help="side of the synthetic scene (default 8192)")
    parser.add_argument("--compress", choices=("deflate", "none"), default="deflate")
    parser.add_argument("--tile-size", type=int, default=1024)
    parser.add_argument("--halo", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=4, help="encoder batch (default 4, the pipeline's)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measurement; the best counts")
    parser.add_argument("--workers", default="1,2", help="reader workers for the scaling runs (default 1,2)")
    parser.add_argument("--before", type=Path, help="a second library checkout to measure side by side")
    parser.add_argument("--after", type=Path, help="with --before: the library to compare (default: this checkout)")
    parser.add_argument("--rounds", type=int, default=1, help="with --before: alternate rounds per library")
    parser.add_argument("--json", type=Path, help="also write every number here")
    parser.add_argument("--child-json", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.workers = [int(w) for w in str(args.workers).split(",") if w]
    sys.path.insert(0, str(BENCH_DIR))

    if args.child_json:
        args.child_json.write_text(json.dumps(measure(args), default=list))
        return 0
    if args.before:
        before, after = [], []
        for _ in range(args.rounds):
            before.append(child(args, args.before.resolve()))
            after.append(child(args, args.after.resolve() if args.after else None))
        measurements = [merge(before), merge(after)]
        labels = ["before", "after"]
    else:
        measurements = [measure(args)]
        labels = ["this checkout"]
    summaries = [summarise(m) for m in measurements]
    print()
    print(f"{args.size}² {args.compress} NAIP-like scene, tiles {args.tile_size}² (halo {args.halo}), "
          f"encoder batch {args.batch_size}, SAM replaced by a zero-cost stand-in; {os.cpu_count()} CPUs; "
          f"best of {args.repeat} x {args.rounds if args.before else 1}; load average {os.getloadavg()[0]:.1f}")
    report(summaries, labels)
    if args.json:
        args.json.write_text(json.dumps({"measurements": dict(zip(labels, measurements, strict=True))}, default=list, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
