"""The one way the library writes a file: to a hidden temporary name beside it, then renamed.

A crash never leaves a half-written file under its final name. The temporary file is
``.NAME.partial-*`` in the destination folder (same file system, so :func:`os.replace` is atomic);
on success its bytes and the folder entry are flushed to disk (``fsync``) before and after the
rename, so a power loss leaves either the old file or the new one; on failure it is removed.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PARTIAL_MARK = ".partial-"
"""Part of the name of every temporary file (tests and cleanup look for it)."""


def fsync_path(path: Path) -> None:
    """Flush ``path`` (a file or a folder) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """A temporary path beside ``final`` (not yet existing), renamed to ``final`` if the block succeeds.

    The block creates the file at the yielded path (any writer: rasterio, GDAL, ``write_text``).
    Its suffix is ``final``'s, so drivers that infer the format from the name see the right one.
    On success the file is fsynced, moved over ``final`` with :func:`os.replace` and the folder
    fsynced; on any exception the temporary file is removed and the exception propagates.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{final.name}{PARTIAL_MARK}", suffix=final.suffix, dir=final.parent)
    os.close(fd)
    tmp = Path(name)
    # Writers such as the GeoPackage driver refuse an existing (empty) file: hand over a free name.
    tmp.unlink()
    try:
        yield tmp
        fsync_path(tmp)
        os.replace(tmp, final)
        fsync_path(final.parent)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(Path(path)) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_path`)."""
    write_bytes_atomic(path, text.encode("utf-8"))


def replace_symlink(link: Path, target: str) -> None:
    """Point ``link`` at ``target`` (a name relative to the link's folder) in one atomic step.

    A new link is made under a unique hidden name and moved over ``link`` with :func:`os.replace`,
    so readers always find ``link``: the old target or the new one, never nothing. ``link`` must be
    a symlink or absent (a real folder cannot be replaced atomically: move it aside first).
    """
    tmp = link.with_name(f".{link.name}.link-{secrets.token_hex(8)}")
    os.symlink(target, tmp)
    try:
        os.replace(tmp, link)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_path(link.parent)
