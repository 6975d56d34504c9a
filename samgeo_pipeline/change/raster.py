"""The rasters of ``change``: the dates read on one grid by windows, their transition classes and occurrence.

**One grid.** The masks are read on one grid: the earliest date's, or a grid in ``crs`` with
``gsd`` metres per pixel over the earliest date's extent. A mask on another grid (CRS, resolution,
offset) is read through a nearest-neighbour :class:`rasterio.vrt.WarpedVRT`, window by window;
what it does not cover is nodata. **Nodata on any date is nodata in the result.**

**Classes** (``change.tif``, uint8, 255 nodata), as the transition classes of the JRC Global
Surface Water (Pekel et al. 2016), keeping their codes. GSW compares the first and the last *year*
of the record, each year being permanent water (water in every observation of that year),
seasonal water (in some) or not water; the years between decide only the ephemeral classes. Here
a year's observations are the dates that fall in it:

====  =====================  ==========================================================
code  class                  first year -> last year
====  =====================  ==========================================================
0     not water              never water
1     permanent              permanent -> permanent
2     new permanent          not water -> permanent
3     lost permanent         permanent -> not water
4     seasonal               seasonal -> seasonal
5     new seasonal           not water -> seasonal
6     lost seasonal          seasonal -> not water
7     seasonal to permanent  seasonal -> permanent
8     permanent to seasonal  permanent -> seasonal
9     ephemeral permanent    not water -> not water, permanent in a year between
10    ephemeral seasonal     not water -> not water, seasonal (never permanent) between
====  =====================  ==========================================================

With one date per year (the usual series) every year is permanent or not water, so a 2-date
series gives 0-3 only (stayed, gained, lost water) and an N-date series adds 9 (water on a date
between two dry ends only); a wet date between two dry ones does not change the class of a pixel
wet at both ends (as in GSW): ``occurrence.tif`` shows it (uint8 per cent of the dates with water,
255 nodata). Seasonal classes need two or more dates in the first or the last year.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import CRSError
from rasterio.transform import Affine
from rasterio.vrt import WarpedVRT
from rasterio.warp import calculate_default_transform
from rasterio.windows import Window

from samgeo_pipeline.errors import InputError
from samgeo_pipeline.io.dates import ImageDate
from samgeo_pipeline.outputs.writers import MASK_NODATA, WindowedRasterWriter

CLASSES: dict[int, str] = {
    0: "not water", 1: "permanent", 2: "new permanent", 3: "lost permanent", 4: "seasonal", 5: "new seasonal",
    6: "lost seasonal", 7: "seasonal to permanent", 8: "permanent to seasonal", 9: "ephemeral permanent",
    10: "ephemeral seasonal",
}  # fmt: skip
"""Codes and names of ``change.tif`` (the GSW transition classes; see the module docstring)."""
NODATA = 255
WINDOW = 1024
"""Side of the windows the grid is computed, counted and traced by (the results do not depend on it)."""

# first-year state x last-year state (0 not water, 1 seasonal, 2 permanent) -> class
_TRANSITION = np.array([[0, 5, 2], [6, 4, 7], [3, 8, 1]], dtype=np.uint8)


class ChangeInputError(InputError):
    """The output folders given to ``change`` cannot be compared (too few dates, no grid, same date twice)."""


@dataclass(frozen=True)
class Grid:
    """The grid every date is read on."""

    crs: CRS | None
    transform: Affine
    width: int
    height: int

    def same_as(self, ds: rasterio.io.DatasetReader) -> bool:
        """True when ``ds`` lies exactly on this grid (read directly, no warping)."""
        tol = 1e-6 * min(abs(self.transform.a), abs(self.transform.e))  # a millionth of a pixel
        same_t = all(abs(x - y) <= tol for x, y in zip(ds.transform, self.transform, strict=True))
        return ds.crs == self.crs and (ds.width, ds.height) == (self.width, self.height) and same_t

    def to_dict(self) -> dict[str, Any]:
        """JSON-able."""
        return {"crs": self.crs.to_string() if self.crs else None, "transform": list(self.transform)[:6],
                "width": self.width, "height": self.height}  # fmt: skip


@dataclass(frozen=True)
class DateInput:
    """One usable date: its output folder, mask and date."""

    folder: Path
    mask: Path
    date: ImageDate
    image: str
    """The input image the folder was made from (as its manifest names it)."""
    status: str


@dataclass
class ChangeResult:
    """What a ``change`` run made."""

    out_dir: Path
    dates: list[DateInput]
    left_out: list[dict[str, str]]
    grid: Grid
    class_pixels: dict[int, int] = field(default_factory=dict)
    class_area_m2: dict[int, float] = field(default_factory=dict)
    date_pixels: list[int] = field(default_factory=list)
    date_area_m2: list[float] = field(default_factory=list)
    valid_pixels: int = 0
    valid_area_m2: float = 0.0
    bodies: int = 0
    outputs: list[Path] = field(default_factory=list)
    manifest: dict[str, Any] | None = None


# --------------------------------------------------------------------------- grid


def grid_options(crs: str | None, gsd: float | None) -> CRS | None:
    """``--crs`` as a CRS (None when not given), after checking it and ``--gsd``.

    Raises:
        ChangeInputError: ``crs`` is not a CRS, or ``gsd`` is not a finite number > 0.
    """
    if gsd is not None and not (math.isfinite(gsd) and gsd > 0):
        raise ChangeInputError(f"gsd={gsd}: must be a finite number > 0 (metres per pixel)")
    try:
        return CRS.from_user_input(crs) if crs else None
    except CRSError:
        raise ChangeInputError(f"crs={crs!r}: not a CRS (e.g. EPSG:32633)") from None


def target_grid(first: Path, crs: str | None = None, gsd: float | None = None) -> Grid:
    """The grid of the result: ``first``'s (a mask), or over its extent in ``crs`` at ``gsd`` metres.

    Raises:
        ChangeInputError: bad ``crs`` or ``gsd`` (:func:`grid_options`), or ``first`` has no CRS to warp from.
    """
    dst = grid_options(crs, gsd)
    with rasterio.open(first) as ds:
        if crs is None and gsd is None:
            return Grid(ds.crs, ds.transform, ds.width, ds.height)
        if ds.crs is None:
            raise ChangeInputError(f"{first}: no CRS, so it cannot be warped to --crs/--gsd; run without them")
        dst = dst or ds.crs
        resolution = None if gsd is None else gsd / metres_per_unit(dst, ds.crs, ds.bounds)
        transform, width, height = calculate_default_transform(
            ds.crs, dst, ds.width, ds.height, *ds.bounds, resolution=resolution
        )
        return Grid(dst, transform, int(width), int(height))


def metres_per_unit(dst: CRS, src: CRS, bounds: Any) -> float:
    """Metres of one unit of ``dst`` (for degrees: one degree of latitude at the centre of ``bounds``)."""
    from pyproj import CRS as ProjCRS
    from pyproj import Geod, Transformer

    proj = ProjCRS.from_user_input(dst.to_wkt())
    if not proj.is_geographic:
        return float(proj.axis_info[0].unit_conversion_factor) if proj.axis_info else 1.0
    x, y = (bounds.left + bounds.right) / 2, (bounds.bottom + bounds.top) / 2
    lon, lat = Transformer.from_crs(src.to_wkt(), "EPSG:4326", always_xy=True).transform(x, y)
    geod = proj.get_geod() or Geod(ellps="WGS84")
    return float(geod.inv(lon, lat - 0.5, lon, lat + 0.5)[2])


@contextmanager
def on_grid(mask: Path, grid: Grid) -> Iterator[Any]:
    """``mask`` opened for window reads on ``grid``: directly when it lies on it, else warped
    (nearest neighbour; pixels it does not cover read as nodata).

    Raises:
        ChangeInputError: the mask is on another grid and one of the two has no CRS.
    """
    with rasterio.open(mask) as ds:
        if grid.same_as(ds):
            yield ds
            return
        if ds.crs is None or grid.crs is None:
            raise ChangeInputError(f"{mask}: on another grid than the first date and without a CRS to align it; "
                                   "segment images of the same grid, or georeferenced ones")
        with WarpedVRT(ds, crs=grid.crs, transform=grid.transform, width=grid.width, height=grid.height,
                       resampling=Resampling.nearest, src_nodata=MASK_NODATA, nodata=NODATA) as vrt:  # fmt: skip
            yield vrt


def row_areas_m2(grid: Grid) -> np.ndarray:
    """``float64 (height,)``: the area in m² of one pixel of each row (geodesic on a geographic CRS;
    NaN without a CRS)."""
    if grid.crs is None:
        return np.full(grid.height, np.nan)
    from pyproj import CRS as ProjCRS
    from pyproj import Geod

    proj = ProjCRS.from_user_input(grid.crs.to_wkt())
    t = grid.transform
    if not proj.is_geographic:
        unit = proj.axis_info[0].unit_conversion_factor if proj.axis_info else 1.0
        return np.full(grid.height, abs(t.a * t.e - t.b * t.d) * unit**2)
    geod = proj.get_geod() or Geod(ellps="WGS84")
    col = grid.width / 2
    areas = np.empty(grid.height)
    for row in range(grid.height):
        corners = [t @ (col, row), t @ (col + 1, row), t @ (col + 1, row + 1), t @ (col, row + 1)]
        lons, lats = zip(*corners, strict=True)
        areas[row] = abs(geod.polygon_area_perimeter(lons, lats)[0])
    return areas


def windows(grid: Grid, size: int | None = None) -> Iterator[Window]:
    """The grid cut into windows of ``size``² (default :data:`WINDOW`), row by row."""
    size = size or WINDOW
    for r0 in range(0, grid.height, size):
        for c0 in range(0, grid.width, size):
            yield Window(c0, r0, min(size, grid.width - c0), min(size, grid.height - r0))


# --------------------------------------------------------------------------- classes


def transitions(water: np.ndarray, years: Sequence[int]) -> np.ndarray:
    """GSW transition class of each pixel (see the module docstring).

    Args:
        water: ``bool (dates, rows, cols)``, dates in time order.
        years: the calendar year of each date.

    Returns:
        ``uint8 (rows, cols)`` class codes (no nodata: mask it afterwards).
    """
    order = sorted(set(years))
    states = []
    for year in order:
        of_year = water[[i for i, y in enumerate(years) if y == year]]
        any_w, all_w = of_year.any(axis=0), of_year.all(axis=0)
        states.append(np.where(all_w, 2, np.where(any_w, 1, 0)).astype(np.uint8))
    first, last = states[0], states[-1]
    classes = _TRANSITION[first, last]
    if len(states) > 2:
        between = np.max(np.stack(states[1:-1]), axis=0)
        dry_ends = (first == 0) & (last == 0)
        classes[dry_ends & (between == 2)] = 9
        classes[dry_ends & (between == 1)] = 10
    return classes


def occurrence_percent(water: np.ndarray) -> np.ndarray:
    """``uint8 (rows, cols)``: per cent (rounded) of the dates with water."""
    percent: np.ndarray = np.rint(100.0 * water.sum(axis=0) / len(water)).astype(np.uint8)
    return percent


def compute_rasters(
    dates: list[DateInput], grid: Grid, out_dir: Path
) -> tuple[WindowedRasterWriter, WindowedRasterWriter, dict[str, Any]]:
    """Classes and occurrence of every pixel of ``grid``, window by window, into two work files.

    Returns:
        ``(change writer, occurrence writer, tallies)``: the writers' work files hold every window;
        tallies: ``class_pixels``, ``class_area``, ``date_pixels``, ``date_area`` (water on each date
        inside the area valid on every date), ``valid_pixels``, ``valid_area``.
    """
    years = [d.date.date.year for d in dates]
    areas = row_areas_m2(grid)
    n_classes = max(CLASSES) + 1
    tallies: dict[str, Any] = {
        "class_pixels": np.zeros(n_classes, np.int64), "class_area": np.zeros(n_classes),
        "date_pixels": np.zeros(len(dates), np.int64), "date_area": np.zeros(len(dates)),
    }  # fmt: skip
    change = WindowedRasterWriter(grid, out_dir / "change.tif", "uint8", NODATA)
    occurrence = WindowedRasterWriter(grid, out_dir / "occurrence.tif", "uint8", NODATA)
    try:
        with ExitStack() as stack:
            sources = [stack.enter_context(on_grid(d.mask, grid)) for d in dates]
            for window in windows(grid):
                water, valid = read_window(sources, window)
                classes = transitions(water, years)
                classes[~valid] = NODATA
                occ = occurrence_percent(water)
                occ[~valid] = NODATA
                change.write(classes, window)
                occurrence.write(occ, window)
                _tally(tallies, classes, water, valid, areas[window.row_off : window.row_off + window.height])
    except BaseException:
        change.remove_work()
        occurrence.remove_work()
        raise
    return change, occurrence, tallies


def read_window(sources: list[Any], window: Window) -> tuple[np.ndarray, np.ndarray]:
    """``(water bool (dates, rows, cols), valid bool (rows, cols))`` of one window of every date
    (:func:`on_grid` datasets): valid where every date is 0 or 1."""
    values = np.stack([src.read(1, window=window) for src in sources])
    valid = cast(np.ndarray, (values <= 1).all(axis=0))  # numpy's stubs allow a scalar for axis=None
    return values == 1, valid


def _tally(tallies: dict[str, Any], classes: np.ndarray, water: np.ndarray, valid: np.ndarray, areas: np.ndarray) -> None:
    """Add one window's pixels and areas (``areas``: m² of a pixel of each of its rows)."""
    weight = np.broadcast_to(areas[:, None], classes.shape)
    codes = classes[valid]
    tallies["class_pixels"] += np.bincount(codes, minlength=len(tallies["class_pixels"]))[: len(CLASSES)]
    tallies["class_area"] += np.bincount(codes, weights=weight[valid], minlength=len(tallies["class_area"]))[: len(CLASSES)]
    for i, w in enumerate(water):
        here = w & valid
        tallies["date_pixels"][i] += int(here.sum())
        tallies["date_area"][i] += float(weight[here].sum())
    tallies["valid_pixels"] = tallies.get("valid_pixels", 0) + int(valid.sum())
    tallies["valid_area"] = tallies.get("valid_area", 0.0) + float(weight[valid].sum())


def result_from(
    out_dir: Path, dates: list[DateInput], left_out: list[dict[str, str]], grid: Grid, tallies: dict[str, Any]
) -> ChangeResult:
    """A :class:`ChangeResult` from :func:`compute_rasters`'s tallies (plain ints and floats)."""
    return ChangeResult(
        out_dir, dates, left_out, grid,
        class_pixels={c: int(tallies["class_pixels"][c]) for c in CLASSES},
        class_area_m2={c: float(tallies["class_area"][c]) for c in CLASSES},
        date_pixels=[int(v) for v in tallies["date_pixels"]],
        date_area_m2=[float(v) for v in tallies["date_area"]],
        valid_pixels=int(tallies.get("valid_pixels", 0)),
        valid_area_m2=float(tallies.get("valid_area", 0.0)),
    )  # fmt: skip
