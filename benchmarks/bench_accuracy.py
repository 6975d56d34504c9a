"""Accuracy of the coarse water mask on real imagery, judged source by source (leave-one-source-out).

The coarse mask is what ``segment --model none`` writes and where SAM's point/box prompts come
from, so it bounds the whole pipeline. This script runs the real pipeline
(:func:`samgeo_pipeline.run.image.segment_raster`, ``model="none"``) on the shared imagery
(``../shared/data``, see its README) and prints two tables: one row per case, and one row per
*source* (a fold: cellula, bakerlake, havel, colorado, l8_cloudy, naip, pucallpa).

Cases (each belongs to one source):

- labelled: Cellula chips (bands 1-7 only, ``blue=2,green=3,red=4,nir=5,swir=6,swir2=7``,
  reflectance x 1e-4: bands 9-12 leak the answer and are never read; also an RGB-only variant),
  IoU, precision, recall pooled over all chips and the mean per-chip IoU; Baker Lake aerial RGB,
  per image. ``mask.tif`` is compared with the label on every pixel: 255 (nodata) counts as not
  water; an image that abstained (status ``uncertain``) counts as no water anywhere.
- Havel winter (Sentinel-2 L1C, 13 bands): IoU, precision, recall on the hand polygons
  (``label_ref_polygons.tif``: 1 water, 2 land, 0 unlabelled and left out); water % of the scene;
  water % inside the OpenStreetMap water areas; and "water % outside": the water of the scene
  outside every 8-connected water region that touches a hand-labelled water polygon or an OSM
  water area (a proxy for false water).
- no-water scenes: Colorado snow (4 dates, red, NIR, SWIR1, reflectance x 1e-4, nodata -9999;
  also agreement with the Fmask water class of ``*_fmask.tif``), the cloudy Landsat 8 scene (its
  band files B2-B6 stacked into one GeoTIFF under ``--out``, ``l8_MTL.txt`` copied beside it) and
  that scene RGB-only: water % of valid pixels.
- unlabelled, with water: NAIP (3 dates, R,G,B,NIR and RGB-only), Pucallpa Landsat (3 dates).
- prompt quality of each labelled case (:func:`samgeo_pipeline.finetune.metrics.prompt_quality`):
  the points the pipeline would give SAM (default prompt options plus ``--negatives`` negatives),
  drawn with :func:`samgeo_pipeline.water.prompts.prompts_for` from the coarse mask of each tile with
  the tile's generator, exactly as :func:`samgeo_pipeline.run.prepare.prepare_tile` draws them (it is
  called when its API allows, and its coarse mask checked against ``mask.tif``; otherwise the
  tiles are cut from ``mask.tif``, which gives the same tiles). Point coordinates are
  ``(x, y) = (col, row)``; tile points are moved to the image frame by the tile's read window.

Score of a source, in [0, 1] (its worst scored case; see :func:`case_score`):

- labelled (Cellula bands 1-7, each Baker Lake image): IoU (pooled over Cellula's chips; Baker
  Lake: the worse image). Cellula RGB-only is reported, not scored.
- Havel: IoU on the hand polygons (its scene water % is reported and checked as a target, not
  scored: its three largest lakes, 5.5 % of the scene, each touch a hand-drawn water polygon).
- no-water scenes (each Colorado date, Landsat 8 cloudy with B2-B6 and RGB-only): 1 when the
  water is <= 0.5 % of valid pixels, or the image abstained (or was refused with a one-line
  error), else 0.5 % / water %.
- NAIP (R,G,B,NIR) and Pucallpa have water but no labels: scored only by abstention (0 when an
  image abstains or fails, else unscored); NAIP RGB-only is reported, not scored.

Constants chosen from data (``dswe_water``, ``rgb_max_water``; only where the checkout has them):
each candidate is run once over the scored cases whose method it affects (dswe resp. rgb, by the
manifest's ``radiometry.index`` under the defaults) and cached. For each held-out source, the
candidate pair that maximises the worst score over the *other* sources is picked (ties: the
shipped default, then fewer changed constants) and scored on the held-out source.

Also two contact sheets: the pipeline's quicklooks of every non-chip image (titled with the water
%), and ~24 Cellula chips as composite | label | coarse mask. Nothing is downloaded.

Usage (from the repository root)::

    python benchmarks/bench_accuracy.py [--data ../shared/data] [--out benchmarks/.cache/accuracy]
        [--tag before] [--results DIR] [--compare OLD.json] [--no-loso]

``--tag T`` names the outputs ``accuracy_T.json``, ``contact_T_images.png``, ``contact_T_chips.png``
(default ``accuracy.json``, ``contact_images.png``, ``contact_chips.png``) in ``--results``
(default: ``--out``); ``--compare OLD.json`` prints the sources' scores old vs new side by side,
then old vs new for every number the two share. Under an older checkout, options and band names
it does not know (``reflectance_scale``, ``swir2``, ...) are left out and listed in the JSON, and
the metric code is loaded from ``--metrics-from`` when the checkout lacks ``prompt_quality``
(default: this checkout's ``samgeo_pipeline/finetune/metrics.py``), so "before" and "after" are
measured by the same code.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import json
import math
import shutil
import sys
import textwrap
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

from _common import fmt_table

import samgeo_pipeline
from samgeo_pipeline.config import SegmentConfig
from samgeo_pipeline.errors import SamgeoPipelineError, first_line
from samgeo_pipeline.finetune.metrics import Confusion, confusion
from samgeo_pipeline.io.bands import BAND_NAMES
from samgeo_pipeline.run.image import segment_raster
from samgeo_pipeline.water.prompts import ComponentPrompt, prompts_for

MASK_NODATA = 255
WATER_FILL = (0, 255, 255)
SAM_PLACEHOLDER = "facebook/sam-vit-base"
"""Model name that makes the config sample prompts (nothing is loaded)."""
TARGETS = {"positives_on_water_fraction": 0.95, "negatives_on_land_fraction": 0.95, "bodies_prompted_fraction": 0.9}
CELLULA_BANDS = "blue=2,green=3,red=4,nir=5,swir=6"  # bands 1-7 only; 9-12 leak the answer
CELLULA_RGB = "red=4,green=3,blue=2"
REFLECTANCE_X10000 = 1e-4
SOURCES = ("cellula", "bakerlake", "havel", "colorado", "l8_cloudy", "naip", "pucallpa")
"""The folds of leave-one-source-out, in table order."""
NOWATER_MAX = 0.005
"""A no-water scene scores 1 up to this water fraction of its valid pixels (issue 22's target)."""
TARGETS_22 = {"bakerlake_iou": 0.85, "havel_iou": 0.95, "havel_scene_max": 0.03, "cellula_iou": 0.65,
              "nowater_max": NOWATER_MAX, "positives_on_water": 0.95, "negatives_on_land": 0.95}
"""Issue 22's targets (leave-one-source-out on shared/data)."""
CONSTANTS: dict[str, tuple[str, tuple[Any, ...]]] = {
    "dswe_water": ("dswe", ("high", "moderate", "wetland")),
    "rgb_max_water": ("rgb", (0.3, 0.4, 0.5, 1.0)),
}
"""Constants chosen from data: option -> (the method whose cases it affects, its candidates)."""


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
    """One row of the table: one image, or a set of images pooled (chips, dates).

    ``score`` says how the case is scored (:func:`case_score`): ``iou`` (labelled), ``havel``
    (hand polygons and OSM), ``nowater``, ``abstain`` (has water, unlabelled: only abstaining
    counts, as 0), or None (reported only). ``options`` are extra config values (dropped when the
    checkout does not know them); ``extra_bands`` are band names appended to ``bands`` when the
    checkout knows the name; ``extras`` holds one more file per image (Colorado: its Fmask; Havel:
    the OSM water layer).
    """

    name: str
    source: str
    bands: str
    images: list[Path]
    labels: list[Path | None]
    note: str = ""
    group: str = "images"  # "chips": pooled, chip contact sheet; "images": quicklook contact sheet
    score: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    extra_bands: dict[str, int] = field(default_factory=dict)
    extras: list[Path | None] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def labelled(self) -> bool:
        return any(lbl is not None for lbl in self.labels)


def read_label(path: Path) -> np.ndarray:
    """``bool (rows, cols)``, True = water (PNG or GeoTIFF, 1 = water)."""
    return read_band(path) == 1


def read_band(path: Path) -> np.ndarray:
    """The first band of a raster (PNG or GeoTIFF), warnings off."""
    with quiet():
        with rasterio.open(path) as ds:
            return ds.read(1)


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


def copy_once(src: Path, dst: Path) -> Path:
    """``dst``, a copy of ``src`` (written once, atomically)."""
    if not dst.is_file():
        tmp = dst.with_name(f".{dst.name}.partial")
        tmp.write_bytes(src.read_bytes())
        tmp.replace(dst)
    return dst


def build_cases(data: Path, work: Path) -> list[Case]:
    """The benchmark's cases, in table order; missing folders are skipped."""
    cases: list[Case] = []
    cel = data / "cellula_water"
    if (cel / "images").is_dir():
        chips = sorted((cel / "images").glob("*.tif"), key=lambda p: int(p.stem) if p.stem.isdigit() else 0)
        labels = [cel / "labels" / f"{p.stem}.png" for p in chips]
        scale = {"reflectance_scale": REFLECTANCE_X10000}  # the data's README: reflectance x 10000
        cases.append(Case("cellula", "cellula", CELLULA_BANDS, chips, labels, "bands 2-7", "chips", "iou", scale,
                          {"swir2": 7}))  # fmt: skip
        cases.append(Case("cellula_rgb", "cellula", CELLULA_RGB, chips, labels, "RGB only", "chips", None, scale))
    baker = data / "bakerlake_aerial_rgb"
    for n in (1, 2):
        image = baker / f"image_{n}of2.tif"
        if image.is_file():
            label = baker / f"label_water_{n}of2.tif"
            cases.append(Case(f"bakerlake_{n}", "bakerlake", "rgb", [image], [label], "RGB", score="iou"))
    havel = data / "sentinel2_havel_winter"
    image = havel / "s2l1c_T33UUU_20170216_13band_10m.tif"
    if image.is_file():
        cases.append(Case("havel", "havel", "sentinel2", [image], [havel / "label_ref_polygons.tif"],
                          "S2 L1C, 13 bands", score="havel", extras=[havel / "label_osm_water.tif"]))  # fmt: skip
    colorado = sorted((data / "landsat_colorado_snow_nowater").glob("*_red_nir_swir1.tif"))
    if colorado:
        fmasks = [p.with_name(p.name.replace("_red_nir_swir1.tif", "_fmask.tif")) for p in colorado]
        cases.append(Case("colorado", "colorado", "red=1,nir=2,swir=3", colorado, [None] * len(colorado),
                          "R,NIR,SWIR1, no water", score="nowater",
                          options={"reflectance_scale": REFLECTANCE_X10000, "nodata": -9999},
                          extras=[f if f.is_file() else None for f in fmasks]))  # fmt: skip
    l8 = data / "landsat8_cloudy_nowater"
    files = [l8 / f"l8_B{b}.tif" for b in range(2, 7)]
    if all(f.is_file() for f in files):
        stack = stack_bands(files, work / "inputs" / "l8_cloudy_B2-B6.tif")  # blue, green, red, nir, swir
        if (l8 / "l8_MTL.txt").is_file():  # the scene's calibration, found beside the stack
            copy_once(l8 / "l8_MTL.txt", work / "inputs" / "l8_cloudy_MTL.txt")
        cases.append(Case("l8_cloudy", "l8_cloudy", "blue=1,green=2,red=3,nir=4,swir=5", [stack], [None],
                          "B2-B6, no water", score="nowater"))  # fmt: skip
        cases.append(Case("l8_cloudy_rgb", "l8_cloudy", "red=3,green=2,blue=1", [stack], [None],
                          "RGB only, no water", score="nowater"))  # fmt: skip
    naip = sorted((data / "naip_potholes").glob("*.tif"))
    for spec, suffix, note, score in (("naip", "", "R,G,B,NIR", "abstain"), ("rgb", "_rgb", "RGB only", None)):
        for image in naip:
            year = image.stem.rsplit("_", 1)[-1][:4]
            cases.append(Case(f"naip_{year}{suffix}", "naip", spec, [image], [None], note, score=score))
    for image in sorted((data / "landsat_pucallpa").glob("*.tif")):
        year = image.stem.rsplit("_", 1)[-1]
        cases.append(Case(f"pucallpa_{year}", "pucallpa", "swir=1,nir=2,red=3,green=4", [image], [None],
                          "SWIR,NIR,R,G", score="abstain"))  # fmt: skip
    return cases


def case_config(case: Case, overrides: dict[str, Any]) -> tuple[SegmentConfig, list[str]]:
    """The case's ``--model none`` config, and the options / bands this checkout does not know (left out)."""
    known = {f.name for f in dataclasses.fields(SegmentConfig)}
    bands = case.bands
    dropped = []
    for name, index in case.extra_bands.items():
        if name in BAND_NAMES:
            bands += f",{name}={index}"
        else:
            dropped.append(f"{name}={index}")
    values: dict[str, Any] = {"bands": bands}
    for key, value in {**case.options, **overrides}.items():
        if key in known:
            values[key] = value
        else:
            dropped.append(f"{key}={value}")
    return SegmentConfig(model="none", progress=False, overwrite=True).merged(values), dropped


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
    from samgeo_pipeline.io.raster import inspect_raster
    from samgeo_pipeline.io.tiling import core_of, make_grid
    from samgeo_pipeline.run.prepare import prepare_tile
    from samgeo_pipeline.water.radiometry import compute_stats

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


def segment_image(image: Path, out_dir: Path, config: SegmentConfig) -> tuple[dict[str, Any], np.ndarray | None]:
    """Segment one image with ``--model none``: its record and its mask (None when it abstained or failed).

    An image abstained when its status is ``uncertain`` or its rule gave a reason
    (``radiometry.coarse.uncertain``): its mask, if written, is not used. A one-line
    :class:`SamgeoPipelineError` is recorded as ``status: error``.
    """
    if out_dir.is_dir():
        shutil.rmtree(out_dir)  # this script's own output: no stale mask.tif from an earlier run
    record: dict[str, Any] = {"name": image.stem, "index": None, "threshold": None, "uncertain": None}
    try:
        with quiet():
            result = segment_raster(image, out_dir, config)
    except SamgeoPipelineError as exc:
        message = first_line(exc)
        record.update(status="error", error=message, abstained=True, water_fraction=None)
        return record, None
    radiometry = (result.manifest.radiometry if result.manifest else None) or {}
    coarse = radiometry.get("coarse") or {}
    mask_path = out_dir / "mask.tif"
    mask = read_band(mask_path) if mask_path.is_file() else None
    abstained = result.status == "uncertain" or bool(coarse.get("uncertain"))
    record.update(
        status=result.status,
        abstained=abstained,
        uncertain=coarse.get("uncertain"),
        index=radiometry.get("index"),
        threshold=radiometry.get("threshold"),
        water_fraction=None if abstained else result.water_fraction,
        quicklook=str(out_dir / "quicklook.png"),
        mask=str(mask_path) if mask is not None else None,
    )
    if mask is not None:
        record["valid_px"], record["px"] = int((mask != MASK_NODATA).sum()), int(mask.size)
        record["mask_water_fraction"] = float((mask == 1).sum() / max(record["valid_px"], 1))
    return record, None if abstained else mask


def predicted_water(mask: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    """``bool`` water of a mask (nodata = not water); no water anywhere when the image abstained."""
    return np.zeros(shape, bool) if mask is None else mask == 1


def score_labelled(record: dict[str, Any], mask: np.ndarray | None, label_path: Path, image: Path) -> np.ndarray:
    """Confusion of the mask against a 0/1 label, into ``record``; returns the label."""
    label = read_label(label_path)
    if mask is not None and label.shape != mask.shape:
        raise SystemExit(f"{label_path}: shape {label.shape} differs from {image} {mask.shape}")
    counts = confusion(predicted_water(mask, label.shape), label)
    record.update(dataclasses.asdict(counts), **counts.scores())
    record["label_water_px"] = int(label.sum())
    record.setdefault("px", int(label.size))
    if mask is not None:
        record["nodata_px"] = int((mask == MASK_NODATA).sum())
        record["nodata_label_water_px"] = int(((mask == MASK_NODATA) & label).sum())
    return label


def score_havel(record: dict[str, Any], mask: np.ndarray | None, label_path: Path, osm_path: Path | None) -> None:
    """Hand polygons (1 water, 2 land, 0 left out), the scene's water %, and OSM water."""
    from scipy import ndimage

    polygons = read_band(label_path)
    known = polygons > 0
    water = predicted_water(mask, polygons.shape)
    counts = confusion(water[known], polygons[known] == 1)
    record.update(dataclasses.asdict(counts), **counts.scores())
    record["label_water_px"], record["label_px"] = int((polygons == 1).sum()), int(known.sum())
    valid = np.ones(polygons.shape, bool) if mask is None else mask != MASK_NODATA
    record["scene_water_fraction"] = float(water.sum() / max(valid.sum(), 1))
    anchors = polygons == 1
    if osm_path is not None and osm_path.is_file():
        osm = read_band(osm_path) == 1
        anchors = anchors | osm
        record["osm_px"] = int(osm.sum())
        record["water_in_osm_fraction"] = float((water & osm).sum() / max(osm.sum(), 1))
    regions, _ = ndimage.label(water, structure=np.ones((3, 3), bool))
    anchored = np.unique(regions[anchors & water])
    outside = water & ~np.isin(regions, anchored[anchored > 0])
    record["water_outside_fraction"] = float(outside.sum() / max(valid.sum(), 1))


def score_fmask(record: dict[str, Any], mask: np.ndarray | None, fmask_path: Path) -> None:
    """Agreement with Fmask's water class (a model, not truth) over pixels both call valid."""
    fmask = read_band(fmask_path)
    known = fmask != 255
    if mask is not None:
        known &= mask != MASK_NODATA
    ours = predicted_water(mask, fmask.shape) & known
    theirs = (fmask == 1) & known
    record["fmask_water_px"], record["water_px"] = int(theirs.sum()), int(ours.sum())
    record["both_water_px"] = int((ours & theirs).sum())
    record["fmask_agreement"] = float((ours == theirs)[known].mean()) if known.any() else None


def nowater_score(record: dict[str, Any]) -> float:
    """1 when the image abstained, was refused, or is at most :data:`NOWATER_MAX` water; else smaller."""
    fraction = record.get("water_fraction")
    if record["abstained"] or fraction is None or fraction <= NOWATER_MAX:
        return 1.0
    return NOWATER_MAX / fraction


def run_image(
    case: Case, index: int, out_dir: Path, config: SegmentConfig, prompt_config: SegmentConfig | None,
    prompt_quality: Callable[..., dict], min_body_px: int,
) -> dict[str, Any]:  # fmt: skip
    """Segment one image of ``case``, score it; prompts only when ``prompt_config`` is given."""
    image, label_path = case.images[index], case.labels[index]
    extra = case.extras[index] if case.extras else None
    record, mask = segment_image(image, out_dir / image.stem, config)
    if case.score == "nowater":
        record["score"] = nowater_score(record)
        if extra is not None:
            score_fmask(record, mask, extra)
    if label_path is None:
        return record
    if case.score == "havel":
        score_havel(record, mask, label_path, extra)
        if prompt_config is not None and mask is not None:
            polygons = read_band(label_path)
            add_prompts(record, image, mask, polygons == 1, prompt_config, prompt_quality, min_body_px, polygons > 0)
        return record
    label = score_labelled(record, mask, label_path, image)
    if prompt_config is not None and mask is not None:
        add_prompts(record, image, mask, label, prompt_config, prompt_quality, min_body_px)
    return record


def add_prompts(
    record: dict[str, Any], image: Path, mask: np.ndarray, label: np.ndarray, prompt_config: SegmentConfig,
    prompt_quality: Callable[..., dict], min_body_px: int, known: np.ndarray | None = None,
) -> None:  # fmt: skip
    """Prompt quality of the points the pipeline would give SAM from this run's coarse mask."""
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
    record["prompts"] = prompt_quality(prompts, label, min_body_px, known) if known is not None else prompt_quality(
        prompts, label, min_body_px
    )  # fmt: skip


def pool_confusion(recs: list[dict[str, Any]]) -> Confusion:
    pooled = Confusion(0, 0, 0, 0)
    for r in recs:
        pooled = pooled + Confusion(r["tp"], r["fp"], r["fn"], r["tn"])
    return pooled


def case_score(case: Case, recs: list[dict[str, Any]]) -> float | None:
    """The case's score in [0, 1] (module docstring), None when it is not scored."""
    if case.score in ("iou", "havel"):
        return float(pool_confusion(recs).scores()["iou"])
    if case.score == "nowater":
        return float(min(r["score"] for r in recs))
    if case.score == "abstain":
        return 0.0 if any(r["abstained"] for r in recs) else None
    return None


def summarize_case(case: Case, pool_prompt_quality: Callable[..., dict]) -> dict[str, Any]:
    """The case's numbers: pooled over its images (one image: that image's)."""
    recs = case.records
    answered = [r for r in recs if not r["abstained"] and "valid_px" in r]
    valid = sum(r["valid_px"] for r in answered)
    water = sum(r["water_fraction"] * r["valid_px"] for r in answered if r["water_fraction"] is not None)
    summary: dict[str, Any] = {
        "source": case.source,
        "kind": case.score or ("labelled" if case.labelled else "unlabelled"),
        "bands": case.bands,
        "note": case.note,
        "images": len(recs),
        "abstained": sum(bool(r["abstained"]) for r in recs),
        "errors": sum(r["status"] == "error" for r in recs),
        "water_fraction": water / valid if valid else None,
        "index": ",".join(sorted({str(r["index"]) for r in recs})),
        "score": case_score(case, recs),
    }
    if case.score == "iou" or case.score == "havel":
        pooled = pool_confusion(recs)
        summary.update(dataclasses.asdict(pooled), **pooled.scores())
        summary["iou_mean"] = float(np.mean([r["iou"] for r in recs]))
        summary["label_water_fraction"] = sum(r["label_water_px"] for r in recs) / sum(r.get("label_px", r["px"]) for r in recs)
        summary["nodata_px"] = sum(r.get("nodata_px", 0) for r in recs)
        summary["nodata_label_water_px"] = sum(r.get("nodata_label_water_px", 0) for r in recs)
        with_prompts = [r["prompts"] for r in recs if "prompts" in r]
        if with_prompts:
            summary["prompts"] = pool_prompt_quality(with_prompts)
            summary["prompt_source"] = ",".join(sorted({r["prompt_source"] for r in recs if "prompt_source" in r}))
    if case.score == "havel":
        for key in ("scene_water_fraction", "water_in_osm_fraction", "water_outside_fraction"):
            summary[key] = recs[0].get(key)
    thresholds = [r["threshold"] for r in recs if r["threshold"] is not None]
    if thresholds:
        summary["threshold"] = thresholds[0] if len(recs) == 1 else {
            "min": float(min(thresholds)), "median": float(np.median(thresholds)), "max": float(max(thresholds))
        }  # fmt: skip
    if len(recs) > 1 or case.score == "nowater":
        summary["per_image"] = [{k: v for k, v in r.items() if k not in ("quicklook", "mask")} for r in recs]
    reasons = sorted({r.get("uncertain") or r.get("error") for r in recs if r["abstained"]} - {None})
    if reasons:
        summary["reasons"] = reasons
    return summary


def pct(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{100 * value:.{digits}f}"


def num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def table(cases: dict[str, dict[str, Any]]) -> str:
    header = ["case", "bands", "imgs", "index", "water %", "IoU", "prec", "recall", "IoU/img", "pos@water",
              "neg@land", "bodies hit", "abstained", "score"]  # fmt: skip
    rows = []
    for name, s in cases.items():
        q = s.get("prompts") or {}
        bodies = "-" if not q else f"{q['bodies_prompted']}/{q['bodies']}"
        rows.append([
            name, s["note"], s["images"], s["index"], pct(s["water_fraction"]),
            num(s.get("iou")), num(s.get("precision")), num(s.get("recall")),
            num(s.get("iou_mean")) if s["images"] > 1 else "-",
            num(q.get("positives_on_water_fraction")), num(q.get("negatives_on_land_fraction")),
            bodies, s.get("abstained") or "-", num(s.get("score")),
        ])  # fmt: skip
    return fmt_table(header, rows)


def details(cases: dict[str, dict[str, Any]]) -> str:
    """Havel's scene figures, the no-water scenes per image, and the abstention reasons."""
    lines = []
    for name, s in cases.items():
        if s["kind"] == "havel":
            lines.append(
                f"{name}: scene {pct(s.get('scene_water_fraction'), 2)} % water; inside OSM water "
                f"{pct(s.get('water_in_osm_fraction'))} %; outside any region touching a water polygon or OSM "
                f"water {pct(s.get('water_outside_fraction'), 2)} % of the scene"
            )  # fmt: skip
        for r in s.get("per_image", []) if s["kind"] == "nowater" else []:
            state = outcome(r) if r["abstained"] else f"{pct(r.get('water_fraction'), 2)} % water"
            fmask = ""
            if "fmask_water_px" in r:
                fmask = f"; Fmask water {r['fmask_water_px']} px, ours {r['water_px']} px, both {r['both_water_px']} px"
            lines.append(f"{name} {r['name']}: {state}, score {num(r['score'])}{fmask}")
        reasons = s.get("reasons", [])
        if reasons:
            more = f" (and {len(reasons) - 1} more like it)" if len(reasons) > 1 else ""
            lines.append(f"{name}: {s['abstained']} of {s['images']} abstained/refused: {reasons[0]}{more}")
    return "\n".join(lines)


# --- sources and leave-one-source-out -------------------------------------------------------------


def source_scores(cases: list[Case], scores: dict[str, float | None]) -> dict[str, dict[str, Any]]:
    """Per source: its score (worst scored case, None when none is scored) and that case."""
    out: dict[str, dict[str, Any]] = {}
    for source in SOURCES:
        mine = [(scores[c.name], c.name) for c in cases if c.source == source and c.name in scores]
        scored = [(v, n) for v, n in mine if v is not None]
        worst = min(scored) if scored else (None, None)
        out[source] = {"score": worst[0], "worst_case": worst[1], "cases": [n for _, n in mine]}
    return {k: v for k, v in out.items() if v["cases"]}


def available_constants() -> dict[str, tuple[str, tuple[Any, ...], Any]]:
    """The :data:`CONSTANTS` this checkout's config has: option -> (method, candidates, default)."""
    defaults = SegmentConfig()
    return {
        key: (method, values, getattr(defaults, key))
        for key, (method, values) in CONSTANTS.items()
        if hasattr(defaults, key)
    }


def affected_cases(cases: list[Case], method: str) -> list[Case]:
    """Scored cases whose default run used ``method`` on some image."""
    return [c for c in cases if c.score is not None and any(r["index"] == method for r in c.records)]


def combo_scores(
    cases: list[Case], base: dict[str, float | None], swept: dict[tuple[str, Any], dict[str, float | None]],
    combo: dict[str, Any],
) -> dict[str, float | None]:  # fmt: skip
    """Per source, its score with the constants set to ``combo`` (cases from the cached runs)."""
    scores = dict(base)
    for key, value in combo.items():
        scores.update(swept.get((key, value), {}))
    return {k: v["score"] for k, v in source_scores(cases, scores).items()}


def loso(
    cases: list[Case], base: dict[str, float | None], swept: dict[tuple[str, Any], dict[str, float | None]],
    constants: dict[str, tuple[str, tuple[Any, ...], Any]],
) -> dict[str, Any]:  # fmt: skip
    """Leave-one-source-out: per held-out source, the candidates best on the others, scored on it."""
    import itertools

    keys = list(constants)
    defaults = {k: constants[k][2] for k in keys}
    combos = [dict(zip(keys, values, strict=True)) for values in itertools.product(*(constants[k][1] for k in keys))]
    table = [(combo, combo_scores(cases, base, swept, combo)) for combo in combos]

    def pick(exclude: str | None) -> tuple[dict[str, Any], float]:
        def rank(item: tuple[dict[str, Any], dict[str, float | None]]) -> tuple[float, int, int]:
            combo, scores = item
            others = [v for s, v in scores.items() if s != exclude and v is not None]
            changed = sum(combo[k] != defaults[k] for k in keys)
            return (min(others) if others else 1.0, -changed, -combos.index(combo))

        best = max(table, key=rank)
        return best[0], rank(best)[0]

    folds: dict[str, Any] = {}
    for source in combo_scores(cases, base, swept, defaults):
        combo, others = pick(source)
        held_out = dict(table[combos.index(combo)][1])[source]
        folds[source] = {"pick": combo, "worst_of_others": others, "score": held_out}
    everything, worst = pick(None)
    return {
        "constants": {k: {"method": constants[k][0], "candidates": list(constants[k][1]), "default": defaults[k],
                          "cases": [c.name for c in affected_cases(cases, constants[k][0])]} for k in keys},
        "folds": folds,
        "all_sources_pick": {"pick": everything, "worst": worst},
        "combos": [{"combo": combo, "sources": scores} for combo, scores in table],
    }  # fmt: skip


def worst_of(scores: dict[str, float | None]) -> tuple[str | None, float | None]:
    scored = [(v, k) for k, v in scores.items() if v is not None]
    return (min(scored)[1], min(scored)[0]) if scored else (None, None)


def short(combo: dict[str, Any] | None, defaults: dict[str, Any]) -> str:
    """``dswe_water=high`` for the constants that differ from the default; ``default`` when none does."""
    if not combo:
        return "-"
    changed = [f"{k}={v}" for k, v in combo.items() if v != defaults.get(k)]
    return ", ".join(changed) or "default"


def source_table(report: dict[str, Any], old: dict[str, Any] | None = None) -> str:
    """One row per source: (old score,) score with the shipped defaults, the LOSO pick and its held-out score."""
    sources = report["sources"]
    folds = (report.get("loso") or {}).get("folds", {})
    defaults = {k: v["default"] for k, v in ((report.get("loso") or {}).get("constants") or {}).items()}
    header = ["source", "cases", "worst case"] + ([f"{old.get('tag') or 'old'}"] if old else []) + [
        "default", "LOSO pick", "LOSO held-out"]  # fmt: skip
    rows = []
    for name, s in sources.items():
        fold = folds.get(name, {})
        row = [name, len(s["cases"]), s["worst_case"] or "-"]
        if old:
            row.append(num((old.get("sources", {}).get(name) or {}).get("score")))
        row += [num(s["score"]), short(fold.get("pick"), defaults), num(fold.get("score", s["score"]))]
        rows.append(row)
    text = fmt_table(header, rows)
    name, value = worst_of({k: v["score"] for k, v in sources.items()})
    text += f"\nworst source, defaults: {name} {num(value)}"
    if folds:
        name, value = worst_of({k: v["score"] for k, v in folds.items()})
        text += f"; leave-one-source-out: {name} {num(value)}"
    if old and old.get("sources"):
        name, value = worst_of({k: v["score"] for k, v in old["sources"].items()})
        text += f"; {old.get('tag') or 'old'}: {name} {num(value)}"
    return text


def outcome(record: dict[str, Any]) -> str:
    """``uncertain`` (the rule's reason), ``error`` (refused), or the run's status."""
    return "uncertain" if record.get("uncertain") else record["status"]


def target_rows(cases: dict[str, dict[str, Any]]) -> list[list[str]]:
    """Issue 22's targets (:data:`TARGETS_22`) against this run: ``[target, measured, met]`` rows."""
    t = TARGETS_22
    rows: list[list[str]] = []

    def row(text: str, value: float | None, ok: bool | None, shown: str | None = None) -> None:
        rows.append([text, shown or num(value), "-" if ok is None else ("yes" if ok else "NO")])

    for name in ("bakerlake_1", "bakerlake_2"):
        if name in cases:
            row(f"{name} IoU >= {t['bakerlake_iou']}", cases[name].get("iou"), cases[name].get("iou", 0) >= t["bakerlake_iou"])
    if "havel" in cases:
        h = cases["havel"]
        row(f"havel polygons IoU >= {t['havel_iou']}", h.get("iou"), h.get("iou", 0) >= t["havel_iou"])
        scene = h.get("scene_water_fraction")
        row(f"havel scene water <= {t['havel_scene_max']:.0%}", scene, scene is not None and scene <= t["havel_scene_max"],
            f"{pct(scene)} %")  # fmt: skip
    if "cellula" in cases:
        iou = cases["cellula"].get("iou")
        row(f"cellula pooled IoU >= {t['cellula_iou']}", iou, (iou or 0) >= t["cellula_iou"])
    for name, s in cases.items():
        if s["kind"] != "nowater":
            continue
        for r in s.get("per_image", []):
            fraction = r.get("water_fraction")
            state = outcome(r) if r["abstained"] else f"{pct(fraction, 2)} %"
            row(f"{name} {r['name'][:21]}: water <= {t['nowater_max']:.1%} or uncertain", None,
                r["abstained"] or (fraction is not None and fraction <= t["nowater_max"]), state)  # fmt: skip
    for name, s in cases.items():
        if s["source"] == "naip":
            state = "abstained" if s["abstained"] else f"{pct(s['water_fraction'])} % (see the contact sheet)"
            row(f"{name}: no bare field or dark crop as water", None, None, state)
    for name, s in cases.items():
        q = s.get("prompts") or {}
        if q and q["positives"] + q["negatives"] == 0:
            row(f"{name} prompts", None, None, f"no point on a labelled pixel ({q['points_ignored']} points)")
        for key, short_key in (("positives_on_water_fraction", "positives_on_water"),
                               ("negatives_on_land_fraction", "negatives_on_land")):
            if q.get(key) is not None:
                count = q[key.replace("_fraction", "")]
                total = q["positives" if key.startswith("pos") else "negatives"]
                row(f"{name} prompts {short_key} >= {t[short_key]}", q[key], q[key] >= t[short_key],
                    f"{q[key]:.3f} ({count}/{total})")  # fmt: skip
    return rows


def flatten(report: dict[str, Any]) -> dict[str, float]:
    """``case.metric`` -> value for every number worth comparing."""
    flat: dict[str, float] = {}
    for name, s in report["cases"].items():
        for key in ("water_fraction", "iou", "precision", "recall", "iou_mean", "score", "scene_water_fraction",
                    "water_in_osm_fraction", "water_outside_fraction"):  # fmt: skip
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
    for ax, (case, rec) in zip(axes.ravel(), items, strict=False):
        title = f"{case.name} {rec['name'][:21]}\n"
        if rec["abstained"]:
            reason = rec.get("uncertain") or rec.get("error") or rec["status"]
            if rec.get("quicklook") and Path(rec["quicklook"]).is_file():
                ax.imshow(Image.open(rec["quicklook"]).convert("RGB"), alpha=0.5)
            ax.text(0.5, 0.5, "\n".join(textwrap.wrap(str(reason), 40)), ha="center", va="center", fontsize=8,
                    transform=ax.transAxes, bbox={"facecolor": "white", "alpha": 0.8})  # fmt: skip
            ax.set_title(title + f"{rec['status']}: no mask, {rec['index']}", fontsize=9)
            continue
        quicklook = np.asarray(Image.open(rec["quicklook"]).convert("RGB")).astype(np.float32)
        with quiet():
            with rasterio.open(rec["mask"]) as ds:  # water filled: the quicklook's outline is thin at this size
                water = ds.read(1, out_shape=quicklook.shape[:2], resampling=Resampling.nearest) == 1
        quicklook[water] = 0.5 * quicklook[water] + 0.5 * np.array(WATER_FILL, np.float32)
        ax.imshow(quicklook.astype(np.uint8))
        title += f"water {pct(rec['water_fraction'])} %, {rec['index']}"
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
    by_name = dict(zip([p.stem for p in case.images], zip(case.images, case.labels, strict=True), strict=True))
    per_row = 4
    rows = math.ceil(len(picks) / per_row)
    fig, axes = plt.subplots(rows, per_row * 3, figsize=(per_row * 3 * 1.45, rows * 1.75), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, rec in enumerate(picks):
        image, label_path = by_name[rec["name"]]
        label = read_label(label_path)  # type: ignore[arg-type]
        mask = read_band(Path(rec["mask"])) if rec.get("mask") and not rec["abstained"] else np.zeros(label.shape, np.uint8)
        shown = np.where(mask == MASK_NODATA, 0.5, mask == 1).astype(np.float32)
        ax_img, ax_lbl, ax_msk = axes[i // per_row, (i % per_row) * 3 : (i % per_row) * 3 + 3]
        ax_img.imshow(_chip_rgb(image))
        ax_img.set_title(f"chip {rec['name']}", fontsize=7)
        ax_lbl.imshow(label, cmap="Blues", vmin=0, vmax=1)
        ax_lbl.set_title(f"label {pct(rec['label_water_px'] / rec['px'], 0)} %", fontsize=7)
        ax_msk.imshow(shown, cmap="Blues", vmin=0, vmax=1)
        ax_msk.set_title(f"coarse, IoU {rec['iou']:.2f}" + (" (abstained)" if rec["abstained"] else ""), fontsize=7)
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


def run_case(
    case: Case, out: Path, overrides: dict[str, Any], prompts: tuple[Callable[..., dict], int, int] | None
) -> tuple[list[dict[str, Any]], list[str]]:  # fmt: skip
    """Every image of the case under ``overrides``; prompt quality when ``prompts`` = (metric, negatives, min_body_px)."""
    config, dropped = case_config(case, overrides)
    prompt_config = None
    if prompts is not None:
        prompt_config = dataclasses.replace(config, model=SAM_PLACEHOLDER, negatives=prompts[1])
    metric, min_body_px = (prompts[0], prompts[2]) if prompts is not None else (None, 0)
    records = [
        run_image(case, i, out / case.name, config, prompt_config, metric, min_body_px)  # type: ignore[arg-type]
        for i in range(len(case.images))
    ]
    return records, dropped


def sweep(
    cases: list[Case], out: Path, constants: dict[str, tuple[str, tuple[Any, ...], Any]],
    pool_prompt_quality: Callable[..., dict],
) -> tuple[dict[tuple[str, Any], dict[str, float | None]], dict[str, dict[str, Any]]]:  # fmt: skip
    """Each non-default candidate once, over the scored cases its method affects.

    Returns:
        ``(key, value) -> {case: score}``, and ``"key=value" -> {case: summary}`` for the JSON.
    """
    swept: dict[tuple[str, Any], dict[str, float | None]] = {}
    summaries: dict[str, dict[str, Any]] = {}
    for key, (method, values, default) in constants.items():
        targets = affected_cases(cases, method)
        for value in values:
            if value == default or not targets:
                continue
            t = time.perf_counter()
            scores = {}
            for case in targets:
                records, _ = run_case(case, out / "sweep" / f"{key}={value}", {key: value}, None)
                scores[case.name] = case_score(case, records)
                summary = summarize_case(dataclasses.replace(case, records=records), pool_prompt_quality)
                summary.pop("per_image", None)
                summaries.setdefault(f"{key}={value}", {})[case.name] = summary
            swept[(key, value)] = scores
            print(f"  {key}={value}: {', '.join(c.name for c in targets)}, {time.perf_counter() - t:.1f} s", flush=True)
    return swept, summaries


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
    parser.add_argument("--no-loso", action="store_true", help="no candidate runs: the shipped defaults only")
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
    dropped: dict[str, list[str]] = {}
    for case in cases:
        t = time.perf_counter()
        if args.chips and case.group == "chips":
            case.images, case.labels = case.images[: args.chips], case.labels[: args.chips]
        case.records, left_out = run_case(case, args.out / "runs", {}, (prompt_quality, args.negatives, args.min_body_px))
        if left_out:
            dropped[case.name] = left_out
        summaries[case.name] = summarize_case(case, pool_prompt_quality)
        summaries[case.name]["seconds"] = round(time.perf_counter() - t, 2)
        print(f"  {case.name}: {len(case.images)} image(s), {time.perf_counter() - t:.1f} s", flush=True)
    base = {name: s["score"] for name, s in summaries.items()}
    constants = {} if args.no_loso else available_constants()
    swept, swept_summaries = sweep(cases, args.out, constants, pool_prompt_quality)
    sources = source_scores(cases, base)
    report = {
        "tag": args.tag,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "samgeo_pipeline": str(Path(samgeo_pipeline.__file__).parent),
        "prompt_metric_from": metric_file,
        "data": str(args.data.resolve()),
        "segment_config": {"model": "none", "defaults": "SegmentConfig() with the case's bands and options"},
        "left_out": dropped,
        "prompts": {"points": SegmentConfig().points, "negatives": args.negatives, "min_body_px": args.min_body_px,
                    "targets": TARGETS},  # fmt: skip
        "scores": {"nowater_max": NOWATER_MAX},
        "cases": summaries,
        "sources": sources,
        "loso": loso(cases, base, swept, constants) if constants else None,
        "targets": target_rows(summaries),
    }
    if report["loso"] is not None:
        report["loso"]["runs"] = swept_summaries
    report["seconds"] = round(time.perf_counter() - t0, 1)

    print()
    print(table(summaries))
    print(
        f"\nwater % of valid pixels; IoU, precision, recall pooled over the case's pixels (mask nodata = not water; "
        f"an abstained image: no water); IoU/img: mean per image; havel: on its hand polygons.\nprompts: default "
        f"points ({SegmentConfig().points}) + {args.negatives} negatives per component, as the pipeline samples them; "
        f"pos@water, neg@land: fraction of points on labelled water / land (targets >= "
        f"{TARGETS['positives_on_water_fraction']}); bodies hit: labelled water bodies > {args.min_body_px} px with "
        f"a positive point.\nscore: see the module docstring (IoU; no-water: 1 up to {NOWATER_MAX:.1%} water or "
        f"abstained or refused; havel: on its polygons)."
    )
    print(details(summaries))
    if dropped:
        print(f"left out (this checkout does not know them): {dropped}")
    old = json.loads(args.compare.read_text()) if args.compare else None
    print()
    print(source_table(report, old))
    print()
    print(fmt_table(["issue 22 target (shipped defaults)", "measured", "met"], report["targets"]))
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
    if old is not None:
        print(f"\ncompared with {args.compare}:\n{compare(old, report)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
