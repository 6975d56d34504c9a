"""The files of a ``change`` run: COGs, polygons per class and water bodies, areas, plot, manifest.

Polygons are traced by :func:`samgeo_pipeline.outputs.polygon_trace.polygon_batches` (one valid Polygon per
4-connected region, by windows) from the uncompressed work files, through a view that reads a
class (or "water on some date") as 1. Water bodies are the 4-connected regions of pixels with water
on at least one date; their area at each date is counted in a second windowed pass (the bodies
rasterised per window in pixel coordinates, exact on pixel corners). Every file is written to a
temporary name and renamed (:mod:`samgeo_pipeline.io.atomic`); ``manifest.json`` last.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from itertools import chain
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pyogrio
import rasterio
import shapely
from rasterio import features
from rasterio.transform import Affine
from rasterio.windows import Window

from samgeo_pipeline.change import raster as change_raster
from samgeo_pipeline.change.raster import CLASSES, ChangeResult, Grid, on_grid, read_window, row_areas_m2, windows
from samgeo_pipeline.io.atomic import atomic_path, write_text_atomic
from samgeo_pipeline.io.gdal_env import gdal_env
from samgeo_pipeline.outputs.manifest import MANIFEST_VERSION, package_versions, write_manifest
from samgeo_pipeline.outputs.polygon_trace import polygon_batches
from samgeo_pipeline.outputs.vectorize import area_perimeter_m, to_map
from samgeo_pipeline.outputs.writers import WindowedRasterWriter

TOP_BODIES = 5
"""Water bodies drawn in ``change.png`` (the largest by their extent over all dates)."""


class _Where:
    """A single-band dataset read as 1 where ``test`` holds, else 0 (what :func:`polygon_batches` traces)."""

    def __init__(self, ds: rasterio.io.DatasetReader, test: Callable[[np.ndarray], np.ndarray]) -> None:
        self.ds, self.test = ds, test
        self.height, self.width = ds.height, ds.width

    def read(self, band: int, window: Window) -> np.ndarray:
        return self.test(self.ds.read(band, window=window)).astype(np.uint8)


def _polygons(ds: rasterio.io.DatasetReader, test: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Pixel-coordinate polygons of the regions where ``test`` holds (an object array)."""
    batches = list(polygon_batches(_Where(ds, test), change_raster.WINDOW))
    return np.concatenate(batches) if batches else np.empty(0, dtype=object)


def _equal_to(code: int) -> Callable[[np.ndarray], np.ndarray]:
    """The test ``values == code`` of one class."""
    return lambda values: values == code


def class_frames(change_work: Path, grid: Grid, codes: list[int]) -> Iterator[gpd.GeoDataFrame]:
    """Layer ``change``, one class at a time: a polygon per 4-connected region of each class in
    ``codes``, with ``class``, ``name`` and ``area_m2`` (an empty frame when ``codes`` is empty)."""

    with gdal_env(read_once=True), rasterio.open(change_work) as ds:
        classes: list[int | None] = [*codes] or [None]
        for code in classes:
            found = _polygons(ds, _equal_to(code)) if code is not None else np.empty(0, dtype=object)
            mapped = to_map(found, grid.transform)
            area, _ = area_perimeter_m(mapped, grid.crs)
            yield gpd.GeoDataFrame(
                {"class": np.full(len(found), code or 0, np.int32), "name": [CLASSES[code or 0]] * len(found),
                 "area_m2": area},
                geometry=gpd.GeoSeries(mapped, crs=grid.crs),
            )  # fmt: skip


def water_bodies(occurrence_work: Path, result: ChangeResult) -> tuple[np.ndarray, np.ndarray]:
    """Water bodies (regions with water on some date) and the area of water in each at every date.

    Returns:
        ``(polygons, areas)``: pixel-coordinate polygons, largest extent first, and ``float64
        (bodies, dates)`` m² (pixels times their row's area; NaN without a CRS).
    """

    with gdal_env(read_once=True), rasterio.open(occurrence_work) as ds:
        bodies = _polygons(ds, lambda v: (v > 0) & (v <= 100))
    bodies = bodies[np.argsort(-shapely.area(bodies), kind="stable")] if len(bodies) else bodies
    n, grid = len(bodies), result.grid
    areas = np.zeros((n + 1, len(result.dates)))
    if n == 0:
        return bodies, areas[1:]
    tree, row_area = shapely.STRtree(bodies), row_areas_m2(grid)
    with gdal_env(), ExitStack() as stack:
        sources = [stack.enter_context(on_grid(d.mask, grid)) for d in result.dates]
        for window in windows(grid):
            c0, r0, w, h = int(window.col_off), int(window.row_off), int(window.width), int(window.height)
            hits = tree.query(shapely.box(c0, r0, c0 + w, r0 + h))
            if not len(hits):
                continue
            ids = features.rasterize(((bodies[i], int(i) + 1) for i in hits), out_shape=(h, w),
                                     transform=Affine.translation(c0, r0), fill=0, dtype="int32")  # fmt: skip
            water, valid = read_window(sources, window)
            weight = np.broadcast_to(row_area[r0 : r0 + h, None], (h, w))
            for d, wet in enumerate(water):
                here = wet & valid & (ids > 0)
                areas[:, d] += np.bincount(ids[here], weights=weight[here], minlength=n + 1)
    return bodies, areas[1:]


def bodies_frame(bodies: np.ndarray, areas: np.ndarray, result: ChangeResult) -> gpd.GeoDataFrame:
    """Layer ``water_bodies``: ``body_id`` (1 = largest), ``extent_m2`` and ``water_m2_<date>`` per date."""
    mapped = to_map(bodies, result.grid.transform)
    extent, _ = area_perimeter_m(mapped, result.grid.crs)
    columns: dict[str, Any] = {"body_id": np.arange(1, len(bodies) + 1, dtype=np.int32), "extent_m2": extent}
    for d, item in enumerate(result.dates):
        columns[date_column(item.date.label)] = areas[:, d] if len(bodies) else np.empty(0)
    return gpd.GeoDataFrame(columns, geometry=gpd.GeoSeries(mapped, crs=result.grid.crs))


def date_column(label: str) -> str:
    """``water_m2_2009_08_18``: the column of a date's water area in ``water_bodies``."""
    return "water_m2_" + label.replace("-", "_")


def write_gpkg(path: Path, layers: Iterable[tuple[str, gpd.GeoDataFrame]]) -> None:
    """Write ``(layer name, frame)`` pairs into one GeoPackage, atomically (frames of one layer are appended)."""
    with atomic_path(path) as tmp:
        for name, frame in layers:
            pyogrio.write_dataframe(frame, tmp, layer=name, driver="GPKG", geometry_type="Polygon",
                                    append=tmp.exists())  # fmt: skip


def areas_csv(result: ChangeResult) -> str:
    """``areas.csv``: water per date, then each class (pixels, m², share of the area valid on every date)."""

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["kind", "key", "name", "pixels", "area_m2", "share_of_valid"])
    valid = result.valid_area_m2 if result.valid_area_m2 > 0 else float("nan")
    for item, pixels, area in zip(result.dates, result.date_pixels, result.date_area_m2, strict=True):
        writer.writerow(["date", item.date.label, Path(item.image).name, pixels, f"{area:.1f}", f"{area / valid:.6f}"])
    for code, name in CLASSES.items():
        area = result.class_area_m2[code]
        writer.writerow(["class", code, name, result.class_pixels[code], f"{area:.1f}", f"{area / valid:.6f}"])
    return out.getvalue()


def write_plot(path: Path, result: ChangeResult, body_areas: np.ndarray) -> None:
    """``change.png``: the water area at each date, and the largest bodies' areas over time."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    when = [item.date.date for item in result.dates]
    labels = [item.date.label for item in result.dates]
    fig = Figure(figsize=(9, 3.6), dpi=100)
    left, right = fig.subplots(1, 2)
    left.plot(when, np.asarray(result.date_area_m2) / 1e6, "o-", color="tab:blue")
    left.set_title("water area per date")
    left.set_ylabel("km²")
    for k in range(min(TOP_BODIES, len(body_areas))):
        right.plot(when, body_areas[k] / 1e6, "o-", label=f"body {k + 1}")
    right.set_title(f"largest {min(TOP_BODIES, len(body_areas))} water bodies")
    right.set_ylabel("km²")
    if len(body_areas):
        right.legend(fontsize=8)
    for ax in (left, right):
        ax.set_xticks(when, labels, rotation=30, fontsize=8)
        ax.grid(alpha=0.3)
        ax.set_ylim(bottom=0)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def build_manifest(result: ChangeResult, crs: str | None, gsd: float | None, seconds: float) -> dict[str, Any]:
    """The run's ``manifest.json``: a ``change`` section, versions and outputs."""

    dates = [
        {"folder": str(d.folder), "image": d.image, "status": d.status, **d.date.to_dict(),
         "water_pixels": p, "water_area_m2": a}
        for d, p, a in zip(result.dates, result.date_pixels, result.date_area_m2, strict=True)
    ]  # fmt: skip
    return {
        "manifest_version": MANIFEST_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "status": "done",
        "change": {
            "dates": dates,
            "left_out": result.left_out,
            "grid": {**result.grid.to_dict(), "source": "--crs/--gsd" if crs or gsd else f"first date ({result.dates[0].folder})",
                     "crs_option": crs, "gsd_m": gsd},  # fmt: skip
            "nodata_rule": "nodata on any date is nodata in change.tif and occurrence.tif",
            "classes": {str(c): {"name": n, "pixels": result.class_pixels[c], "area_m2": result.class_area_m2[c]}
                        for c, n in CLASSES.items()},  # fmt: skip
            "class_scheme": "JRC Global Surface Water transitions (Pekel et al. 2016), first vs last year",
            "valid": {"pixels": result.valid_pixels, "area_m2": result.valid_area_m2},
            "water_bodies": result.bodies,
        },
        "seconds": round(seconds, 3),
        "versions": package_versions(),
        "outputs": [p.name for p in result.outputs],
    }


def write_outputs(
    result: ChangeResult, change: WindowedRasterWriter, occurrence: WindowedRasterWriter,
    crs: str | None, gsd: float | None, started: float,
) -> None:
    """Finish the run into ``result.out_dir``: COGs, GeoPackage, CSV, plot, manifest (last).

    ``started``: ``time.perf_counter()`` at the start of the run (the manifest's ``seconds``)."""

    out = result.out_dir
    try:
        change_work, occurrence_work = change.close(), occurrence.close()
        outputs = [change.make_cog("nearest"), occurrence.make_cog("nearest")]
        codes = [c for c in CLASSES if c != 0 and result.class_pixels[c] > 0]
        bodies, body_areas = water_bodies(occurrence_work, result)
        result.bodies = len(bodies)
        layers = (("change", frame) for frame in class_frames(change_work, result.grid, codes))  # one class at a time
        write_gpkg(out / "change.gpkg", chain(layers, [("water_bodies", bodies_frame(bodies, body_areas, result))]))
        write_text_atomic(out / "areas.csv", areas_csv(result))
        write_plot(out / "change.png", result, body_areas)
        outputs += [out / "change.gpkg", out / "areas.csv", out / "change.png"]
    finally:
        change.remove_work()
        occurrence.remove_work()
    result.outputs = [*outputs, out / "manifest.json"]
    result.manifest = build_manifest(result, crs, gsd, time.perf_counter() - started)
    write_manifest(out / "manifest.json", result.manifest)
