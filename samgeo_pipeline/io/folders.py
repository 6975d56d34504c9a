"""An image's output folder: the inputs it must never touch, its lock, and what killed runs left there.

- :func:`check_inputs_outside`: before anything is written, no input of a batch may lie in (or be
  reached through a link from) any output folder of the batch, since a run replaces and deletes
  files there.
- :func:`output_lock`: a run holds ``flock`` on ``OUT/.samgeo-lock`` from its first write to its
  manifest; the kernel drops it when the holder dies, even by ``kill -9``.
- :func:`remove_partials`: under that lock, the temporary files of a dead run are removed (only the
  pipeline's own hidden ``.NAME.partial-*`` / ``.NAME.work-*`` names, regular files, never a link).
- :func:`clear_stale_outputs`: under that lock, before a run writes, the manifest and the outputs
  this run would leave stale; :func:`output_identities` and :func:`remove_new_outputs`: a finish that
  fails removes the outputs it had put in place, so none is left without its manifest.

Used by :class:`~samgeo_pipeline.run.image.RasterRun` (so the CLI and the flows alike), the CLI and
the segment flow.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from samgeo_pipeline.errors import UnsafePathError
from samgeo_pipeline.io.atomic import PARTIAL_MARK

#: Files a run writes, renames over or deletes in an image's output folder.
OUTPUT_NAMES = ("mask.tif", "probability.tif", "water.gpkg", "quicklook.png", "item.json", "manifest.json")
#: Lock file of an output folder (hidden: never served). Its presence also marks a folder this
#: pipeline has written in (:func:`samgeo_pipeline.outputs.reuse.check_folder_owner`).
LOCK_NAME = ".samgeo-lock"
#: Name parts of the library's temporary files: :func:`samgeo_pipeline.io.atomic.atomic_path`'s
#: ``.NAME.partial-*`` (and GDAL's side files of it, ``.ovr.tmp``, ``-journal``) and the work
#: files of :class:`samgeo_pipeline.outputs.writers.WindowedRasterWriter`, ``.NAME.work-*``.
TEMPORARY_MARKS = (PARTIAL_MARK, ".work-")


def check_inputs_outside(inputs: Sequence[Path | str], out_dirs: Sequence[Path | str]) -> None:
    """Refuse a batch in which an output folder would hold, or an output file resolve to, an input.

    Paths are compared resolved (links followed): an input must be neither an output folder nor
    below one, and no output file of a folder (:data:`OUTPUT_NAMES`) may resolve to an input. An
    output folder inside an input's folder is fine (``segment d4 --out d4/out``).

    Raises:
        UnsafePathError: one line naming the input, the folder and the fix.
    """
    resolved = {Path(p).resolve(): Path(p) for p in inputs}
    folders = {Path(d).resolve(): Path(d) for d in out_dirs}
    for path, given in resolved.items():  # a walk up each input: linear in the batch, not quadratic
        holder = next((folders[p] for p in (path, *path.parents) if p in folders), None)
        if holder is not None:
            raise UnsafePathError(
                f"{given}: lies in the output folder {holder}, where a run replaces and deletes files; "
                "choose an output root (--out) whose image folders hold no input, e.g. a new, empty folder"
            )
    for folder, out_dir in folders.items():
        if not folder.is_dir():
            continue  # nothing there yet: no name in it leads anywhere
        for name in OUTPUT_NAMES:
            target = (folder / name).resolve()
            if target in resolved:
                raise UnsafePathError(
                    f"{resolved[target]}: {out_dir / name} leads to this input and would be replaced; "
                    "remove that link or choose another output root (--out)"
                )


@contextmanager
def output_lock(out_dir: Path | str) -> Iterator[None]:
    """Hold an exclusive lock on ``out_dir`` (``flock`` on ``out_dir/.samgeo-lock``; waits for it).

    The kernel drops the lock when its holder dies, even by ``kill -9``: whoever holds it knows
    that no live process of another run writes in the folder. The lock file stays (it marks the
    folder as this pipeline's).
    """
    with file_lock(Path(out_dir) / LOCK_NAME):
        yield


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created with its folder when missing; waits for it).

    The one lock of the pipeline's folders (an image folder, a STAC catalog's root): the kernel
    frees it when its holder dies, even by ``kill -9``, and the file stays.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def remove_partials(out_dir: Path | str) -> list[Path]:
    """Remove the library's temporary files (hidden, ``.partial-``/``.work-`` in the name) from
    ``out_dir``; call it only while holding :func:`output_lock`, when their writer is known dead.

    Returns:
        The files removed (nothing else is touched: no folder, no link, no visible or foreign file,
        nothing below ``out_dir``).
    """
    folder = Path(out_dir)
    if not folder.is_dir():
        return []
    removed = []
    for entry in sorted(folder.iterdir()):
        name = entry.name
        ours = name.startswith(".") and any(m in name for m in TEMPORARY_MARKS)
        if ours and not entry.is_symlink() and entry.is_file():
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


#: What a finished run leaves beside its manifest.
_BESIDE_MANIFEST = tuple(name for name in OUTPUT_NAMES if name != "manifest.json")


def output_identities(out_dir: Path) -> dict[str, tuple[int, int] | None]:
    """Output name -> (inode, mtime) of the file there now, or None: to tell later which ones a run replaced."""
    found: dict[str, tuple[int, int] | None] = {}
    for name in _BESIDE_MANIFEST:
        try:
            stat = (out_dir / name).stat()
            found[name] = (stat.st_ino, stat.st_mtime_ns)
        except OSError:
            found[name] = None
    return found


def remove_new_outputs(out_dir: Path, before: dict[str, tuple[int, int] | None]) -> None:
    """Remove the outputs put in place since ``before`` (each rename makes a new inode): a failed
    finish leaves no output without its manifest, and nothing it did not write is touched."""
    for name, identity in output_identities(out_dir).items():
        if identity is not None and identity != before[name] and not (out_dir / "manifest.json").exists():
            (out_dir / name).unlink(missing_ok=True)


def clear_stale_outputs(out_dir: Path, probability: bool, abstains: bool = False) -> None:
    """Remove what the outputs about to be written make stale (the manifest first: the run is not finished).

    A run without ``probability`` leaves an earlier run's probability raster stale; an abstaining
    run writes no mask: an earlier run's mask, polygons and probabilities would be taken for this one's.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "manifest.json").unlink(missing_ok=True)
    stale = ["mask.tif", "water.gpkg", "probability.tif"] if abstains else []
    if not probability:  # a probability raster from an earlier run would no longer match
        stale.append("probability.tif")
    for name in dict.fromkeys(stale):
        (out_dir / name).unlink(missing_ok=True)


__all__ = ["OUTPUT_NAMES", "LOCK_NAME", "TEMPORARY_MARKS", "check_inputs_outside", "output_lock", "remove_partials",
           "clear_stale_outputs", "output_identities", "remove_new_outputs"]
