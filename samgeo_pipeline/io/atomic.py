"""The one way the library writes a file: to a hidden temporary name beside it, then renamed.

A crash never leaves a half-written file under its final name. The temporary file is
``.NAME.partial-*`` in the destination folder (same file system, so :func:`os.replace` is atomic);
on success its bytes and the folder entry are flushed to disk (``fsync``) before and after the
rename, so a power loss leaves either the old file or the new one; on failure it is removed, and
a full disk is reported as one line naming the disk and the file (:func:`no_space_error`).
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from samgeo_pipeline.errors import OutputWriteError

PARTIAL_MARK = ".partial-"
"""Part of the name of every temporary file (tests and cleanup look for it)."""

FULL_DISK_BYTES = 1 << 20
"""A disk with less free space than this after a failed write is taken as full: GDAL often reports
a full disk only as a failed read or commit later on, or prints it without raising."""


def free_space(folder: Path) -> int:
    """Free bytes on the disk of ``folder`` (or of its nearest existing parent)."""
    folder = Path(folder).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free


def device_name(path: Path) -> str:
    """The file system ``path`` is on, for messages: its mount point, and what is mounted there when
    ``/proc/self/mounts`` says (``/mnt/out (tmpfs)``)."""
    mount = Path(path).absolute()
    while not mount.exists() and mount != mount.parent:
        mount = mount.parent
    while mount != mount.parent and mount.parent.stat().st_dev == mount.stat().st_dev:
        mount = mount.parent
    try:
        for line in Path("/proc/self/mounts").read_text().splitlines():
            source, target, *_ = line.split()
            if target.replace("\\040", " ") == str(mount):
                return f"{mount} ({source})"
    except (OSError, ValueError):
        pass
    return str(mount)


def no_space_error(final: Path, exc: BaseException | None = None) -> OutputWriteError | None:
    """The one-line error of a full disk while writing ``final``, or None when the disk is not full.

    The disk counts as full when ``exc`` or an exception it came from says so (``ENOSPC``, or GDAL's
    "No space left on device"), or when ``final``'s disk has less than :data:`FULL_DISK_BYTES` free.
    Call it before the failed temporary file is removed.
    """
    chain: list[BaseException] = []
    seen = exc
    while seen is not None and len(chain) < 8:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    said = any(getattr(e, "errno", None) == errno.ENOSPC or "no space left" in str(e).lower() for e in chain)
    try:
        full = said or free_space(final.parent) < FULL_DISK_BYTES
        device = device_name(final.parent) if full else ""
    except OSError:
        return None
    if not full:
        return None
    return OutputWriteError(
        f"no space left on {device} while writing {final}; free some space or write to another --out"
    )


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
    except Exception as exc:  # a full disk is named as such, whatever the writer raised
        full = no_space_error(final, exc)
        if full is None:
            raise
        raise full from None
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
