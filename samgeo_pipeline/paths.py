"""Output folders: one per input, named so that it cannot leave the output root, and the check
that an output path resolves under its root.

Used by the CLI (:func:`samgeo_pipeline.cli.run_segment`) and the flows (``flows/common.py``), so
both name folders the same way. A folder name is never ``.``, ``..`` or empty and holds no path
separator or control character; every folder is checked with :func:`check_inside` before anything
is written to it, which also catches a symbolic link in the output root pointing elsewhere.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path, PurePath

from samgeo_pipeline.errors import UnsafePathError

#: Characters never kept in a folder name: separators (both kinds) and control characters.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\]")


def safe_name(text: str) -> str:
    """``text`` as one folder name: separators and control characters become ``_``; a name made
    only of dots (``.``, ``..``) or an empty one becomes as many ``_`` (at least one)."""
    name = _UNSAFE.sub("_", text)
    if not name.strip("."):
        name = "_" * max(1, len(name))
    return name


def output_name(path: PurePath, suffix_in_name: bool = False) -> str:
    """The folder name of one input: its stem, made safe (``...tif`` -> ``__``, ``..tif`` -> ``_``).

    Args:
        path: the input (a local path, or the path part of a URL).
        suffix_in_name: append the suffix unless it is ``.tif`` (``x.tiff`` -> ``x_tiff``), so
            inputs that differ only by suffix get different folders even in separate runs.
    """
    name = path.stem
    suffix = path.suffix.lower()
    if suffix_in_name and suffix and suffix != ".tif":
        name = f"{name}_{suffix[1:]}"
    return safe_name(name)


def output_dirs(
    inputs: Sequence[PurePath],
    root: Path,
    subfolders: Sequence[Sequence[str]] | None = None,
    suffix_in_name: bool = False,
) -> list[Path]:
    """One output folder per input: ``root / subfolders... / name`` (see :func:`output_name`).

    Inputs of the list that would share a folder each get a hash of their path appended
    (``scene_1a2b3c4d``). Inputs of separate runs may still meet in one folder; the pipeline then
    refuses to replace another input's outputs (:func:`samgeo_pipeline.manifest.check_folder_owner`).

    Args:
        inputs: the inputs, in order.
        root: the output root.
        subfolders: per input, folder names to insert below ``root`` (each made safe); None: none.
        suffix_in_name: see :func:`output_name`.
    """
    subs = subfolders if subfolders is not None else [()] * len(inputs)
    dirs = [
        root.joinpath(*(safe_name(part) for part in sub), output_name(p, suffix_in_name))
        for p, sub in zip(inputs, subs, strict=True)
    ]
    return [
        d if dirs.count(d) == 1 else d.with_name(f"{d.name}_{hashlib.sha1(str(p).encode()).hexdigest()[:8]}")
        for d, p in zip(dirs, inputs)
    ]


def check_inside(path: Path, root: Path) -> Path:
    """Return ``path`` after checking that it resolves (links followed) strictly below ``root``.

    Raises:
        UnsafePathError: ``path`` is ``root`` itself or lies outside it.
    """
    base = Path(root).resolve()
    resolved = Path(path).resolve()
    if base not in resolved.parents:
        raise UnsafePathError(
            f"{path}: resolves to {resolved}, not inside the output root {base}; "
            "remove the link there or choose another output root"
        )
    return path


__all__ = ["safe_name", "output_name", "output_dirs", "check_inside"]
