"""Output folders: one per input, named so that it cannot leave the output root, and the check
that an output path resolves under its root.

Used by the CLI (:func:`samgeo_pipeline.cli.run_segment`) and the flows (``flows/inputs.py``), so
both name folders the same way. A folder name is never ``.``, ``..`` or empty, holds no path
separator or control character and never passes :data:`NAME_MAX_BYTES`; every folder is checked
with :func:`check_inside` before anything is written to it, which also catches a symbolic link in
the output root pointing elsewhere. Names are printed through :func:`printable`.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from pathlib import Path, PurePath

from samgeo_pipeline.errors import UnsafePathError

#: Characters never kept in a folder name: separators (both kinds) and control characters.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\]")


#: Longest file or folder name, in bytes, that common file systems take (ext4, XFS, APFS, NTFS's 255 units).
NAME_MAX_BYTES = 255

#: What a name must not print raw: C0 and C1 control characters (ESC, CSI, newline, ...), DEL,
#: bidirectional overrides, and the lone surrogates that stand for undecodable bytes.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def safe_name(text: str, max_bytes: int = NAME_MAX_BYTES) -> str:
    """``text`` as one folder name: separators and control characters become ``_``; a name made
    only of dots (``.``, ``..``) or an empty one becomes as many ``_`` (at least one); a name over
    ``max_bytes`` is shortened (:func:`cap_name`)."""
    name = _UNSAFE.sub("_", text)
    if not name.strip("."):
        name = "_" * max(1, len(name))
    return cap_name(name, max_bytes)


def cap_name(name: str, max_bytes: int = NAME_MAX_BYTES) -> str:
    """``name`` if it fits ``max_bytes`` (as the file system stores it: UTF-8, undecodable bytes as
    they were); else its longest prefix of whole characters that leaves room for ``_`` and 8 hex
    digits of the whole name's SHA-1, then those, then its suffix (``.tif``, when short): names
    that differ anywhere stay different, and the result is never longer than ``max_bytes``."""
    data = os.fsencode(name)
    if len(data) <= max_bytes:
        return name
    suffix = PurePath(name).suffix if len(os.fsencode(PurePath(name).suffix)) <= 16 else ""
    tail = f"_{hashlib.sha1(data).hexdigest()[:8]}{suffix}"
    room, head = max_bytes - len(os.fsencode(tail)), []
    for char in name:
        room -= len(os.fsencode(char))
        if room < 0:
            break
        head.append(char)
    return "".join(head) + tail


def printable(text: object) -> str:
    """``str(text)`` safe to print on a terminal or in a log line: control characters, bidi
    overrides and undecodable bytes are shown as escapes (``\\x1b``, ``\\u202e``), so a file name can
    neither move the cursor, recolour or clear the screen, nor split or reorder a line.
    The one helper for every place a name is printed (CLI log lines, errors, warnings, the summary table)."""
    return _UNPRINTABLE.sub(lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100 else f"\\u{ord(m[0]):04x}", str(text))


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
    refuses to replace another input's outputs (:func:`samgeo_pipeline.outputs.reuse.check_folder_owner`).

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
        d if dirs.count(d) == 1 else d.with_name(f"{cap_name(d.name, NAME_MAX_BYTES - 9)}_{_path_hash(p)}")
        for d, p in zip(dirs, inputs, strict=True)
    ]


def _path_hash(path: PurePath) -> str:
    """8 hex digits of the SHA-1 of ``path`` (undecodable bytes as they were)."""
    return hashlib.sha1(os.fsencode(str(path))).hexdigest()[:8]


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


__all__ = ["NAME_MAX_BYTES", "safe_name", "cap_name", "printable", "output_name", "output_dirs", "check_inside"]
