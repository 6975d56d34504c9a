"""Accuracy of the coarse water mask on real imagery, and the quality of the prompts drawn from it.

The coarse mask is what ``segment --model none`` writes and where SAM's point/box prompts come
from, so it bounds the whole pipeline. This script runs the real pipeline
(:func:`samgeo_pipeline.pipeline.segment_raster`, ``model="none"``) on the shared imagery
(``../shared/data``, see its README) and prints one table:

- labelled: Cellula chips (bands 1-7 only, ``blue=2,green=3,red=4,nir=5,swir=6``: bands 9-12 leak
  the answer and are never read; also an RGB-only variant ``red=4,green=3,blue=2``), pooled IoU,
  precision, recall over all chips and the mean per-chip IoU; Baker Lake aerial RGB, per image.
  ``mask.tif`` is compared with the label on every pixel: 255 (nodata) counts as not water, and
  the labelled pixels that are nodata are reported.
- prompt quality of each labelled case (:func:`samgeo_pipeline.finetune.metrics.prompt_quality`):
  the points the pipeline would give SAM (default prompt options plus ``--negatives`` negatives),
  drawn with :func:`samgeo_pipeline.prompts.prompts_for` from the coarse mask of each tile with
  the tile's generator, exactly as :func:`samgeo_pipeline.reader.prepare_tile` draws them (it is
  called when its API allows, and its coarse mask checked against ``mask.tif``; otherwise the
  tiles are cut from ``mask.tif``, which gives the same tiles). Point coordinates are
  ``(x, y) = (col, row)``; tile points are moved to the image frame by the tile's read window.
- unlabelled: water fraction of NAIP (3 dates, R,G,B,NIR, and RGB-only), Pucallpa Landsat (3 dates),
  the cloudy no-water Landsat 8 scene (one file per band, stacked here into a GeoTIFF) and its
  RGB-only variant.

Also two contact sheets: the pipeline's quicklooks of every non-chip image (titled with the water
%), and ~24 Cellula chips as composite | label | coarse mask. Nothing is downloaded.

Usage (from the repository root)::

    python benchmarks/bench_accuracy.py [--data ../shared/data] [--out benchmarks/.cache/accuracy]
        [--tag before] [--results DIR] [--compare OLD.json]

``--tag T`` names the outputs ``accuracy_T.json``, ``contact_T_images.png``, ``contact_T_chips.png``
(default ``accuracy.json``, ``contact_images.png``, ``contact_chips.png``) in ``--results``
(default: ``--out``); ``--compare OLD.json`` prints old vs new for every number the two share.
Under an older checkout without ``prompt_quality``, the metric code is loaded from
``--metrics-from`` (default: this checkout's ``samgeo_pipeline/finetune/metrics.py``), so
"before" and "after" are measured by the same code.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import json
import math
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import Resampling

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from _common import fmt_table  # noqa: E402

import samgeo_pipeline  # noqa: E402
from samgeo_pipeline.config import SegmentConfig  # noqa: E402
from samgeo_pipeline.finetune.metrics import Confusion, confusion  # noqa: E402
from samgeo_pipeline.pipeline import segment_raster  # noqa: E402
from samgeo_pipeline.prompts import ComponentPrompt, prompts_for  # noqa: E402

MASK_NODATA = 255
WATER_FILL = (0, 255, 255)
SAM_PLACEHOLDER = "facebook/sam-vit-base"
"""Model name that makes the config sample prompts (nothing is loaded)."""
TARGETS = {"positives_on_water_fraction": 0.98, "negatives_on_land_fraction": 0.98, "bodies_prompted_fraction": 0.9}
CELLULA_BANDS = "blue=2,green=3,red=4,nir=5,swir=6"  # bands 1-7 only; 9-12 leak the answer
CELLULA_RGB = "red=4,green=3,blue=2"


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Warnings off: the chips have no CRS (the pipeline warns, as expected), nor have the PNG labels."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def load_prompt_metric(metrics_from: Path | None) -> tuple[Callable[..., dict], Callable[..., dict], str]:
    """``prompt_quality`` and ``pool_prompt_quality``: the imported package's, else ``metrics_from``'s."""
    try:
        from samgeo_pipeline.finetune.metrics import pool_prompt_quality, prompt_quality

        return prompt_quality, pool_prompt_quality, str(Path(sys.modules[prompt_quality.__module__].__file__))
    except ImportError:
        pass
    path = metrics_from or BENCH_DIR.parent / "samgeo_pipeline" / "finetune" / "metrics.py"
    spec = importlib.util.spec_from_file_location("_bench_prompt_metrics", path)
    if spec is None or spec.loader is None or not path.is_file():
        raise SystemExit(f"{samgeo_pipeline.__file__} has no prompt_quality; pass --metrics-from NEWER/metrics.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up
    spec.loader.exec_module(module)
    if not hasattr(module, "prompt_quality"):
        raise SystemExit(f"{path} has no prompt_quality; pass --metrics-from NEWER/metrics.py")
    return module.prompt_quality, module.pool_prompt_quality, str(path)


@dataclass
class Case:
    """One row of the table: one image, or a set of chips pooled."""

    name: str
    bands: str
    images: list[Path]
    labels: list[Path | None]
    note: str = ""
    group: str = "images"  # "chips": pooled, chip contact sheet; "images": quicklook contact sheet
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def labelled(self) -> bool:
        return any(lbl is not None for lbl in self.labels)


def read_label(path: Path) -> np.ndarray:
    """``bool (rows, cols)``, True = water (PNG or GeoTIFF, 1 = water)."""
    with quiet():
        with rasterio.open(path) as ds:
            return ds.read(1) == 1


def stack_bands(files: list[Path], dst: Path) -> Path:
    """One multi-band GeoTIFF from single-band files (same grid), written once."""
    if dst.is_file():
        return dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(files[0]) as first:
        profile = first.profile.copy()
    profile.update(count=len(files), driver="GTiff", compress="deflate", tiled=False)
    tmp = dst.with_name(f".{dst.name}.partial")
    with rasterio.open(tmp, "w", **profile) as out:
        for i, f in enumerate(files, start=1):
            with rasterio.open(f) as src:
                out.write(src.read(1), i)
    tmp.replace(dst)
    return dst


def build_cases(data: Path, work: Path) -> list[Case]:
    """The benchmark's cases, in table order; missing folders are skipped with a note."""
    cases: list[Case] = []
    cel = data / "cellula_water"
    if (cel / "images").is_dir():
        chips = sorted((cel / "images").glob("*.tif"), key=lambda p: int(p.stem) if p.stem.isdigit() else 0)
        labels = [cel / "labels" / f"{p.stem}.png" for p in chips]
        cases.append(Case("cellula", CELLULA_BANDS, chips, labels, "bands 2-6", "chips"))
        cases.append(Case("cellula_rgb", CELLULA_RGB, chips, labels, "RGB only", "chips"))
    baker = data / "bakerlake_aerial_rgb"
    for n in (1, 2):
        image = baker / f"image_{n}of2.tif"
        if image.is_file():
            cases.append(Case(f"bakerlake_{n}", "rgb", [image], [baker / f"label_water_{n}of2.tif"], "RGB"))
    naip = sorted((data / "naip_potholes").glob("*.tif"))
    for spec, suffix, note in (("naip", "", "R,G,B,NIR"), ("rgb", "_rgb", "RGB only")):
        for image in naip:
            year = image.stem.rsplit("_", 1)[-1][:4]
            cases.append(Case(f"naip_{year}{suffix}", spec, [image], [None], note))
    for image in sorted((data / "landsat_pucallpa").glob("*.tif")):
        year = image.stem.rsplit("_", 1)[-1]
        cases.append(Case(f"pucallpa_{year}", "swir=1,nir=2,red=3,green=4", [image], [None], "SWIR,NIR,R,G"))
    l8 = data / "landsat8_cloudy_nowater"
    files = [l8 / f"l8_B{b}.tif" for b in range(2, 7)]
    if all(f.is_file() for f in files):
        stack = stack_bands(files, work / "inputs" / "l8_cloudy_B2-B6.tif")  # blue, green, red, nir, swir
        cases.append(Case("l8_cloudy", "blue=1,green=2,red=3,nir=4,swir=5", [stack], [None], "B2-B6, no water"))
        cases.append(Case("l8_cloudy_rgb", "red=3,green=2,blue=1", [stack], [None], "RGB only, no water"))
    return cases


def tile_origins(height: int, width: int, config: SegmentConfig) -> list[tuple[int, int, int, int]]:
    """``(tile_row, tile_col, row_off, col_off)`` of the pipeline's tiles (no ``gsd``): read windows."""
    core = config.tile_size - 2 * config.halo
    return [
        (r, c, r * core - config.halo, c * core - config.halo)
        for r in range(math.ceil(height / core))
        for c in range(math.ceil(width / core))
    ]


def shifted(prompt: ComponentPrompt, col_off: float, row_off: float) -> ComponentPrompt:
    """A tile's prompt in the image frame (points are ``(x, y) = (col, row)``)."""
    box = None if prompt.box_xyxy is None else prompt.box_xyxy + np.array([col_off, row_off] * 2, np.float32)
    return dataclasses.replace(prompt, points_xy=prompt.points_xy + np.array([col_off, row_off], np.float32), box_xyxy=box)


def prompts_from_mask(mask: np.ndarray, config: SegmentConfig) -> list[ComponentPrompt]:
    """The pipeline's prompts, each tile cut from ``mask.tif`` (uint8: 1 water, 0 not, 255 nodata).

    The pipeline's tile coarse mask is False outside its valid pixels and, for ``min_area <= halo + 1``,
    independent of the tiling; so the tile's read window of ``mask.tif`` is the tile's coarse mask.
    """
    height, width = mask.shape
    size = config.tile_size
    out = []
    for tr, tc, r0, c0 in tile_origins(height, width, config):
        coarse = np.zeros((size, size), bool)
        valid = np.zeros((size, size), bool)
        ra, ca = max(0, r0), max(0, c0)
        rb, cb = min(height, r0 + size), min(width, c0 + size)
        part = mask[ra:rb, ca:cb]
        coarse[ra - r0 : rb - r0, ca - c0 : cb - c0] = part == 1
        valid[ra - r0 : rb - r0, ca - c0 : cb - c0] = part != MASK_NODATA
        if not coarse.any():
            continue
        rng = np.random.default_rng([config.seed, tr, tc])  # reader.prepare_tile's generator
        out.extend(shifted(p, c0, r0) for p in prompts_for(coarse, valid, config, rng))
    return out


def prompts_by_prepare_tile(path: Path, config: SegmentConfig) -> tuple[list[ComponentPrompt], np.ndarray]:
    """The prompts (image frame) and the coarse mask (core mosaic) as ``prepare_tile`` makes them.

    Uses the pipeline's internals (may raise if their API changed; the caller falls back).
    """
    from samgeo_pipeline.reader import prepare_tile
    from samgeo_pipeline.radiometry import compute_stats
    from samgeo_pipeline.raster import inspect_raster
    from samgeo_pipeline.tiling import core_of, make_grid

    with quiet():
        info = inspect_raster(path, config.bands, config.nodata)
        with rasterio.open(path) as ds:
            stats = compute_stats(ds, info, config)
            grid = make_grid(info, config)
            coarse = np.zeros((info.height, info.width), bool)
            prompts: list[ComponentPrompt] = []
            for tile in grid:
                prepared = prepare_tile(ds, info, stats, tile, config)
                core = tile.core_window(info.height, info.width)
                r0, c0 = int(core.row_off), int(core.col_off)
                part = core_of(tile, prepared.coarse, info.height, info.width)
                coarse[r0 : r0 + part.shape[0], c0 : c0 + part.shape[1]] = part
                win = tile.read_window
                if grid.scale != 1.0:
                    raise ValueError("working pixels differ from source pixels (gsd)")
                prompts.extend(shifted(p, win.col_off, win.row_off) for p in prepared.prompts)
    return prompts, coarse


def run_image(
    case: Case, image: Path, label_path: Path | None, out: Path, config: SegmentConfig, prompt_config: SegmentConfig,
    prompt_quality: Callable[..., dict], min_body_px: int,
) -> dict[str, Any]:  # fmt: skip
    """Segment one image with ``--model none``; score it against its label when there is one."""
    out_dir = out / "runs" / case.name / image.stem
    with quiet():
        result = segment_raster(image, out_dir, config)
        with rasterio.open(out_dir / "mask.tif") as ds:
            mask = ds.read(1)
    radiometry = (result.manifest or {}).get("radiometry", {})
    record: dict[str, Any] = {
        "name": image.stem,
        "status": result.status,
        "water_fraction": result.water_fraction,
        "index": radiometry.get("index"),
        "threshold": radiometry.get("threshold"),
        "valid_px": int((mask != MASK_NODATA).sum()),
        "px": int(mask.size),
        "quicklook": str(out_dir / "quicklook.png"),
        "mask": str(out_dir / "mask.tif"),
    }
    if label_path is None:
        return record
    label = read_label(label_path)
    if label.shape != mask.shape:
        raise SystemExit(f"{label_path}: shape {label.shape} differs from {image} {mask.shape}")
    counts = confusion(mask == 1, label)  # nodata (255) counts as not water
    record.update(dataclasses.asdict(counts), **counts.scores())
    record["label_water_px"] = int(label.sum())
    record["nodata_px"] = int((mask == MASK_NODATA).sum())
    record["nodata_label_water_px"] = int(((mask == MASK_NODATA) & label).sum())
    # Prompts as the pipeline would draw them for SAM, from this run's coarse mask.
    source = "mask.tif"
    try:
        prompts, coarse = prompts_by_prepare_tile(image, prompt_config)
        if np.array_equal(coarse, mask == 1):
            source = "prepare_tile"
        else:
            record["prepare_tile_mismatch_px"] = int((coarse != (mask == 1)).sum())
    except Exception as exc:  # noqa: BLE001 - a benchmark: fall back, and say so
        record["prepare_tile_error"] = f"{type(exc).__name__}: {exc}"
    if source == "mask.tif":
        prompts = prompts_from_mask(mask, prompt_config)
    record["prompt_source"] = source
    record["prompts"] = prompt_quality(prompts, label, min_body_px)
    return record


def summarize_case(case: Case, pool_prompt_quality: Callable[..., dict]) -> dict[str, Any]:
    """The case's numbers: pooled over its images (one image: that image's)."""
    recs = case.records
    valid = sum(r["valid_px"] for r in recs)
    water = sum(r["water_fraction"] * r["valid_px"] for r in recs if r["water_fraction"] is not None)
    summary: dict[str, Any] = {
        "kind": "labelled" if case.labelled else "unlabelled",
        "bands": case.bands,
        "note": case.note,
        "images": len(recs),
        "water_fraction": water / valid if valid else None,
        "valid_fraction": valid / sum(r["px"] for r in recs),
        "index": ",".join(sorted({str(r["index"]) for r in recs})),
    }
    thresholds = [r["threshold"] for r in recs if r["threshold"] is not None]
    if thresholds:
        summary["threshold"] = thresholds[0] if len(recs) == 1 else {
            "min": float(min(thresholds)), "median": float(np.median(thresholds)), "max": float(max(thresholds))
        }  # fmt: skip
    if case.labelled:
        pooled = Confusion(0, 0, 0, 0)
        for r in recs:
            pooled = pooled + Confusion(r["tp"], r["fp"], r["fn"], r["tn"])
        summary.update(dataclasses.asdict(pooled), **pooled.scores())
        summary["iou_mean"] = float(np.mean([r["iou"] for r in recs]))
        summary["label_water_fraction"] = sum(r["label_water_px"] for r in recs) / sum(r["px"] for r in recs)
        summary["nodata_px"] = sum(r["nodata_px"] for r in recs)
        summary["nodata_label_water_px"] = sum(r["nodata_label_water_px"] for r in recs)
        summary["prompts"] = pool_prompt_quality(r["prompts"] for r in recs)
        sources = sorted({r["prompt_source"] for r in recs})
        summary["prompt_source"] = ",".join(sources)
    if len(recs) > 1:
        summary["per_image"] = [
            {k: v for k, v in r.items() if k not in ("quicklook", "mask")} for r in recs
        ]
    return summary


def pct(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{100 * value:.{digits}f}"


def num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def table(cases: dict[str, dict[str, Any]]) -> str:
    header = ["case", "bands", "imgs", "index", "water %", "IoU", "prec", "recall", "IoU/img", "pos@water",
              "neg@land", "bodies hit", "nodata px"]  # fmt: skip
    rows = []
    for name, s in cases.items():
        q = s.get("prompts") or {}
        bodies = "-" if not q else f"{q['bodies_prompted']}/{q['bodies']}"
        rows.append([
            name, s["note"], s["images"], s["index"], pct(s["water_fraction"]),
            num(s.get("iou")), num(s.get("precision")), num(s.get("recall")),
            num(s.get("iou_mean")) if s["images"] > 1 else "-",
            num(q.get("positives_on_water_fraction")), num(q.get("negatives_on_land_fraction")),
            bodies, s.get("nodata_px", "-"),
        ])  # fmt: skip
    return fmt_table(header, rows)


def flatten(report: dict[str, Any]) -> dict[str, float]:
    """``case.metric`` -> value for every number worth comparing."""
    flat: dict[str, float] = {}
    for name, s in report["cases"].items():
        for key in ("water_fraction", "iou", "precision", "recall", "iou_mean"):
            if s.get(key) is not None and (key != "iou_mean" or s["images"] > 1):
                flat[f"{name}.{key}"] = float(s[key])
        for key in TARGETS:
            value = (s.get("prompts") or {}).get(key)
            if value is not None:
                flat[f"{name}.{key.replace('_fraction', '')}"] = float(value)
    return flat


def compare(old: dict[str, Any], new: dict[str, Any]) -> str:
    a, b = flatten(old), flatten(new)
    rows = [[key, num(a[key]), num(b[key]), f"{b[key] - a[key]:+.3f}"] for key in a if key in b]
    text = fmt_table(["case.metric", old.get("tag") or "old", new.get("tag") or "new", "change"], rows)
    for name, s in new["cases"].items():
        before = old["cases"].get(name)
        if before is not None and before["images"] != s["images"]:
            text += f"\nnote: {name} has {before['images']} image(s) in the old run, {s['images']} now: not comparable"
    return text


def contact_images(cases: list[Case], summaries: dict[str, dict[str, Any]], path: Path) -> Path | None:
    """The quicklooks of the non-chip images, titled with name and water %."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    items = [(c, r) for c in cases if c.group == "images" for r in c.records]
    if not items:
        return None
    cols = 4
    rows = math.ceil(len(items) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 4.0, rows * 3.6), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (case, rec) in zip(axes.ravel(), items):
        quicklook = np.asarray(Image.open(rec["quicklook"]).convert("RGB")).astype(np.float32)
        with quiet():
            with rasterio.open(rec["mask"]) as ds:  # water filled: the quicklook's outline is thin at this size
                water = ds.read(1, out_shape=quicklook.shape[:2], resampling=Resampling.nearest) == 1
        quicklook[water] = 0.5 * quicklook[water] + 0.5 * np.array(WATER_FILL, np.float32)
        ax.imshow(quicklook.astype(np.uint8))
        title = f"{case.name} ({case.note})\nwater {pct(rec['water_fraction'])} %, {rec['index']}"
        if rec.get("threshold") is not None:
            title += f" > {rec['threshold']:.2f}"
        if "iou" in rec:
            title += f", IoU {rec['iou']:.2f}"
        ax.set_title(title, fontsize=9)
    fig.suptitle("quicklooks of the coarse water mask (--model none): water outlined in magenta and filled in cyan, "
                 "nodata dark grey", fontsize=11)  # fmt: skip
    fig.tight_layout()
    return _save_small(fig, path)


def _chip_rgb(path: Path) -> np.ndarray:
    with quiet():
        with rasterio.open(path) as ds:
            bands = ds.read([4, 3, 2]).astype(np.float32)  # red, green, blue
    low, high = np.percentile(bands, [2, 98], axis=(1, 2))
    scaled = (bands - low[:, None, None]) / np.maximum(high - low, 1)[:, None, None]
    return np.clip(scaled, 0, 1).transpose(1, 2, 0)


def contact_chips(case: Case, path: Path, n: int = 24) -> Path | None:
    """``n`` chips spread over the labelled water fraction: true colour | label | coarse mask."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = sorted(case.records, key=lambda r: (r["label_water_px"], r["name"]))
    if not recs:
        return None
    picks = [recs[i] for i in np.unique(np.linspace(0, len(recs) - 1, min(n, len(recs))).round().astype(int))]
    by_name = dict(zip([p.stem for p in case.images], zip(case.images, case.labels)))
    per_row = 4
    rows = math.ceil(len(picks) / per_row)
    fig, axes = plt.subplots(rows, per_row * 3, figsize=(per_row * 3 * 1.45, rows * 1.75), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, rec in enumerate(picks):
        image, label_path = by_name[rec["name"]]
        with quiet():
            with rasterio.open(rec["mask"]) as ds:
                mask = ds.read(1)
        label = read_label(label_path)  # type: ignore[arg-type]
        shown = np.where(mask == MASK_NODATA, 0.5, mask == 1).astype(np.float32)
        ax_img, ax_lbl, ax_msk = axes[i // per_row, (i % per_row) * 3 : (i % per_row) * 3 + 3]
        ax_img.imshow(_chip_rgb(image))
        ax_img.set_title(f"chip {rec['name']}", fontsize=7)
        ax_lbl.imshow(label, cmap="Blues", vmin=0, vmax=1)
        ax_lbl.set_title(f"label {pct(rec['label_water_px'] / rec['px'], 0)} %", fontsize=7)
        ax_msk.imshow(shown, cmap="Blues", vmin=0, vmax=1)
        ax_msk.set_title(f"coarse, IoU {rec['iou']:.2f}", fontsize=7)
    fig.suptitle(f"Cellula chips ({case.bands}): true colour | label | coarse mask (grey: nodata)", fontsize=10)
    fig.tight_layout()
    return _save_small(fig, path)


def _save_small(fig: Any, path: Path, dpi: int = 80) -> Path:
    """Save a figure as a PNG of at most 256 colours (small enough to commit)."""
    import matplotlib.pyplot as plt
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial.png")
    fig.savefig(tmp, dpi=dpi)
    plt.close(fig)
    Image.open(tmp).convert("RGB").quantize(colors=256).save(path, optimize=True)
    tmp.unlink()
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"), help="shared imagery (default: ../shared/data)")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / ".cache" / "accuracy", help="pipeline outputs")
    parser.add_argument("--results", type=Path, help="where the JSON and contact sheets go (default: --out)")
    parser.add_argument("--tag", default="", help="label of this run (e.g. before, after); names the outputs")
    parser.add_argument("--compare", type=Path, help="an earlier accuracy JSON to compare with")
    parser.add_argument("--negatives", type=int, default=3, help="negative points per component for prompt quality")
    parser.add_argument("--min-body-px", type=int, default=1000, help="water bodies of more than this many px")
    parser.add_argument("--chips", type=int, default=0, help="only the first N Cellula chips (0: all; for a quick try)")
    parser.add_argument("--metrics-from", type=Path, help="metrics.py providing prompt_quality for older checkouts")
    args = parser.parse_args(argv)

    if not args.data.is_dir():
        print(f"no data at {args.data} (the shared imagery); nothing to measure")
        return 0
    prompt_quality, pool_prompt_quality, metric_file = load_prompt_metric(args.metrics_from)
    results = args.results or args.out
    suffix = f"_{args.tag}" if args.tag else ""
    t0 = time.perf_counter()
    cases = build_cases(args.data, args.out)
    summaries: dict[str, dict[str, Any]] = {}
    for case in cases:
        t = time.perf_counter()
        config = SegmentConfig(model="none", bands=case.bands, progress=False, overwrite=True)
        prompt_config = dataclasses.replace(config, model=SAM_PLACEHOLDER, negatives=args.negatives)
        pairs = list(zip(case.images, case.labels))
        if args.chips and case.group == "chips":
            pairs = pairs[: args.chips]
            case.images, case.labels = [p for p, _ in pairs], [lbl for _, lbl in pairs]
        for image, label in pairs:
            case.records.append(
                run_image(case, image, label, args.out, config, prompt_config, prompt_quality, args.min_body_px)
            )
        summaries[case.name] = summarize_case(case, pool_prompt_quality)
        summaries[case.name]["seconds"] = round(time.perf_counter() - t, 2)
        print(f"  {case.name}: {len(pairs)} image(s), {time.perf_counter() - t:.1f} s", flush=True)

    print()
    print(table(summaries))
    print(
        f"\nwater % of valid pixels; IoU, precision, recall pooled over the case's pixels (mask nodata = not water); "
        f"IoU/img: mean per image.\nprompts: default points ({SegmentConfig().points}) + {args.negatives} negatives "
        f"per component, as the pipeline samples them; pos@water, neg@land: fraction of points on labelled water / "
        f"land (targets >= {TARGETS['positives_on_water_fraction']}); bodies hit: labelled water bodies "
        f"> {args.min_body_px} px with a positive point (target >= {TARGETS['bodies_prompted_fraction']:.0%})."
    )
    report = {
        "tag": args.tag,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "samgeo_pipeline": str(Path(samgeo_pipeline.__file__).parent),
        "prompt_metric_from": metric_file,
        "data": str(args.data.resolve()),
        "segment_config": {"model": "none", "defaults": "SegmentConfig() with the case's bands"},
        "prompts": {"points": SegmentConfig().points, "negatives": args.negatives, "min_body_px": args.min_body_px,
                    "targets": TARGETS},  # fmt: skip
        "seconds": round(time.perf_counter() - t0, 1),
        "cases": summaries,
    }
    results.mkdir(parents=True, exist_ok=True)
    json_path = results / f"accuracy{suffix}.json"
    json_path.write_text(json.dumps(report, indent=1))
    sheets = [contact_images(cases, summaries, results / f"contact{suffix}_images.png")]
    chip_case = next((c for c in cases if c.name == "cellula" and c.records), None)
    if chip_case is not None:
        sheets.append(contact_chips(chip_case, results / f"contact{suffix}_chips.png"))
    print(f"\n{time.perf_counter() - t0:.0f} s; numbers: {json_path}")
    for sheet in sheets:
        if sheet is not None:
            print(f"contact sheet: {sheet} ({sheet.stat().st_size / 2**20:.2f} MiB)")
    if args.compare:
        old = json.loads(args.compare.read_text())
        print(f"\ncompared with {args.compare}:\n{compare(old, report)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
