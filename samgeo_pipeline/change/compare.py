"""``change``: how the water changed between dates, from finished output folders of one place.

Each input is an output folder of ``segment`` (``mask.tif``: 1 water, 0 not water, 255 nodata, and
its ``manifest.json``). The dates (:mod:`samgeo_pipeline.io.dates`) order the folders; a folder whose
status is ``uncertain`` without a ``mask.tif`` (the coarse rule abstained) is reported and left out.
The masks are compared on one grid by :mod:`samgeo_pipeline.change.raster` (where the classes are
defined) and the files written by :mod:`samgeo_pipeline.change.outputs`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

from rasterio.errors import RasterioError

from samgeo_pipeline.change.outputs import write_outputs
from samgeo_pipeline.change.raster import (
    CLASSES,
    ChangeInputError,
    ChangeResult,
    DateInput,
    Grid,
    compute_rasters,
    grid_options,
    result_from,
    target_grid,
    transitions,
)
from samgeo_pipeline.errors import ManifestError, ManifestVersionError, OutputConflictError, UnsafePathError, first_line
from samgeo_pipeline.io.dates import image_date
from samgeo_pipeline.io.folders import output_lock
from samgeo_pipeline.outputs.manifest import MANIFEST_NAME, Manifest, read_manifest_json

OUTPUT_NAMES = ("change.tif", "occurrence.tif", "change.gpkg", "areas.csv", "change.png", "manifest.json")

# --------------------------------------------------------------------------- inputs


def read_folder(folder: Path, given: str | None = None) -> tuple[DateInput | None, str | None]:
    """One output folder: ``(DateInput, None)``, or ``(None, reason)`` when it is left out (uncertain, no mask).

    Raises:
        ChangeInputError: not a finished output folder of ``segment`` (no or foreign manifest, failed).
        ManifestVersionError: its manifest was written by a newer samgeo-pipeline.
    """
    manifest_path = folder / MANIFEST_NAME
    try:
        data = read_manifest_json(manifest_path)
    except ManifestVersionError:
        raise
    except ManifestError:
        raise ChangeInputError(f"{folder}: not a finished output folder of segment (no readable manifest.json); "
                               "run segment on the image first") from None
    try:
        manifest = Manifest.from_dict(data, manifest_path)
    except ManifestError:
        raise ChangeInputError(f"{folder}: manifest.json is not a segment manifest; pass the image folders of segment") from None
    status, image = manifest.status, str(manifest.input.path or "")
    mask = folder / "mask.tif"
    if not mask.is_file():
        if status == "uncertain":
            reason = (manifest.uncertain.reason if manifest.uncertain else None) or "the coarse rule abstained"
            return None, f"{folder}: uncertain, no mask.tif ({reason}); left out"
        raise ChangeInputError(f"{folder}: status {status} and no mask.tif; run segment on the image again")
    name = Path(str(manifest.input.source or image))
    date = image_date(Path(image) if Path(image).name == name.name else name, given, readable=bool(image))
    return DateInput(folder, mask, date, image, status), None


def read_folders(
    folders: Sequence[Path], dates: Sequence[str] | None = None, log: Callable[[str], None] = print
) -> tuple[list[DateInput], list[dict[str, str]]]:
    """The usable dates of ``folders``, earliest first, and the folders left out with their reasons.

    Raises:
        ChangeInputError: ``dates`` does not give one date per folder, two folders have the same date,
            or fewer than two dates are left.
    """
    if dates is not None and len(dates) != len(folders):
        raise ChangeInputError(f"--dates gives {len(dates)} date(s) for {len(folders)} folder(s); give one per folder, in order")
    usable, left_out = [], []
    for i, folder in enumerate(folders):
        item, reason = read_folder(Path(folder), dates[i] if dates is not None else None)
        if item is None:
            log(f"left out: {reason}")
            left_out.append({"folder": str(folder), "reason": str(reason)})
        else:
            log(f"{folder}: date {item.date.label} ({item.date.source})")
            usable.append(item)
    usable.sort(key=lambda d: d.date.date)
    for a, b in zip(usable, usable[1:], strict=False):
        if a.date.date == b.date.date:
            raise ChangeInputError(f"{a.folder} and {b.folder} have the same date {a.date.label}; "
                                   "pass --dates to say when each was taken")
    if len(usable) < 2:
        raise ChangeInputError(f"{len(usable)} usable date(s) of {len(folders)} folder(s) (left out: "
                               f"{len(left_out)}); change needs two or more finished masks of one place")
    return usable, left_out


# --------------------------------------------------------------------------- the run


def check_out_dir(out_dir: Path, folders: Sequence[Path], images: Sequence[str]) -> None:
    """Refuse an ``--out`` that would write over an input or the user's files.

    ``--out`` may not be an input folder or lie inside one (a re-run of segment replaces files
    there), no output name in it may lead (links followed) to an input's mask, manifest or image,
    and a folder holding our output names without a change manifest holds the user's files.

    Raises:
        UnsafePathError: ``--out`` is or lies in an input folder, or an output name leads to an input.
        OutputConflictError: ``--out`` holds files ``change`` did not write.
    """
    out = out_dir.resolve()
    for folder in folders:
        f = Path(folder).resolve()
        if out == f or f in out.parents:
            raise UnsafePathError(f"{out_dir}: is or lies in the input folder {folder}; choose another --out")
    protected = {Path(p).resolve() for p in images if p}
    for folder in folders:
        protected |= {(Path(folder) / n).resolve() for n in ("mask.tif", "manifest.json", "water.gpkg")}
    for name in OUTPUT_NAMES:
        if (out_dir / name).resolve() in protected:
            raise UnsafePathError(f"{out_dir / name}: leads to an input ({(out_dir / name).resolve()}); "
                                  "remove that link or choose another --out")
    manifest = out_dir / "manifest.json"
    if manifest.exists():
        try:
            ours = "change" in read_manifest_json(manifest)
        except ManifestVersionError:
            raise
        except ManifestError:
            ours = False
        if not ours:
            raise OutputConflictError(f"{manifest}: not a manifest of change (another run's or the user's file); "
                                      "choose another --out")
        return
    foreign = [n for n in OUTPUT_NAMES if (out_dir / n).exists()]
    if foreign:
        raise OutputConflictError(f"{out_dir}: holds {', '.join(foreign)} that change did not write; choose another --out")


def run_change(
    folders: Sequence[Path],
    out_dir: Path,
    dates: Sequence[str] | None = None,
    crs: str | None = None,
    gsd: float | None = None,
    log: Callable[[str], None] = print,
) -> ChangeResult:
    """Compare the water of ``folders`` (output folders of segment) into ``out_dir``.

    Writes ``change.tif`` and ``occurrence.tif`` (COGs), ``change.gpkg`` (layers ``change`` and
    ``water_bodies``), ``areas.csv``, ``change.png`` and, last, ``manifest.json`` with a ``change``
    section; each to a temporary name, then renamed.

    Raises:
        ChangeInputError, UnsafePathError, OutputConflictError: one line naming the folder and the fix.
    """
    started = time.perf_counter()
    folders = [Path(f) for f in folders]
    grid_options(crs, gsd)  # a bad option is refused before anything is read
    usable, left_out = read_folders(folders, dates, log)
    check_out_dir(Path(out_dir), folders, [d.image for d in usable])
    grid = target_grid(usable[0].mask, crs, gsd)
    out_dir = Path(out_dir)
    with output_lock(out_dir):
        (out_dir / "manifest.json").unlink(missing_ok=True)  # ours (checked): a failed run leaves none
        try:
            change, occurrence, tallies = compute_rasters(usable, grid, out_dir)
        except RasterioError as exc:
            raise ChangeInputError(f"{out_dir}: reading the masks failed ({first_line(exc)})") from None
        result = result_from(out_dir, usable, left_out, grid, tallies)
        if result.valid_pixels == 0:
            change.remove_work()
            occurrence.remove_work()
            raise ChangeInputError(f"{out_dir}: no pixel has data on every date (do the masks cover the same place?); "
                                   "no output written")
        write_outputs(result, change, occurrence, crs, gsd, started)
    log(f"change: {len(usable)} dates -> {out_dir}")
    return result


__all__ = ["CLASSES", "ChangeInputError", "ChangeResult", "Grid", "OUTPUT_NAMES", "check_out_dir", "read_folder",
           "read_folders", "run_change", "target_grid", "transitions"]
