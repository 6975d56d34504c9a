"""What a flow's inputs are and where they go, without Prefect: local paths and fsspec URLs, their
output folders, expanding specs into files, fetching remote inputs into staging folders (checked
against the store, locked while used, removed after or when a crashed run left them).

The tasks of :mod:`flows.segment_tasks` and the watch flow's scans call these; tests call them directly.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import os
import posixpath
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

from samgeo_pipeline.errors import InputError, RasterReadError, SamgeoPipelineError, first_line
from samgeo_pipeline.io.paths import check_inside, output_dirs, safe_name
from samgeo_pipeline.io.raster import RASTER_SUFFIXES, expand_inputs
from samgeo_pipeline.io.stac_input import anchor_assets, is_stac_item
from samgeo_pipeline.redact import redact

#: Suffixes the watch flow picks up.
GEOTIFF_SUFFIXES = (".tif", ".tiff")


def is_remote(spec: str) -> bool:
    """True for an fsspec URL other than a local file (``s3://b/x.tif``, ``memory://x``)."""
    match = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://", spec)
    return bool(match) and match.group(1).lower() not in ("file", "local")


def local_path(spec: str) -> str:
    """``file:///a/b`` -> ``/a/b``; other strings unchanged."""
    return spec[len("file://"):] if spec.startswith("file://") else spec


def url_path(spec: str) -> PurePosixPath:
    """The path part of a local path or fsspec URL (``s3://bucket/a/b.tif`` -> ``bucket/a/b.tif``).

    A URL's user-info (``user:password@``) is dropped, and an http(s) URL's query and fragment
    (``?X-Amz-Signature=...`` of a presigned URL): no credential becomes part of a folder or file name.
    """
    spec = local_path(spec)
    if is_remote(spec):
        scheme, rest = spec.split("://", 1)
        if scheme.lower() in ("http", "https"):
            rest = rest.split("#", 1)[0].split("?", 1)[0]
        host, sep, tail = rest.partition("/")
        spec = (host.rsplit("@", 1)[-1] + sep + tail).lstrip("/")  # memory:///a and memory://a name the same file
    return PurePosixPath(spec.replace(os.sep, "/"))


def image_output_dirs(inputs: Sequence[str], root: Path, relative_to: str | None = None) -> list[Path]:
    """One output folder per input below ``root`` (named by :func:`samgeo_pipeline.io.paths.output_dirs`).

    Without ``relative_to``: the input's name (plus a path hash when two inputs of the run share
    it), as the CLI does. With it (the watch flow passes the watched root): the input's folder
    relative to ``relative_to``, then its name, so equal names in different sub-folders do not
    collide. The name is the stem, plus the suffix when it is not ``.tif`` (``x.tiff`` ->
    ``x_tiff``): the watch flow starts one run per file, so ``x.tif`` and ``x.tiff`` must differ by
    name alone. Paths are normalised first (``a/../../b`` cannot climb out of ``relative_to``; an
    input outside it goes to the root's level) and every folder name is made safe, so each folder
    lies below ``root``.
    """
    paths = [PurePosixPath(posixpath.normpath(str(url_path(s)))) for s in inputs]
    subfolders: list[tuple[str, ...]] | None = None
    if relative_to is not None:
        base = PurePosixPath(posixpath.normpath(str(url_path(relative_to))))
        subfolders = []
        for path in paths:
            try:
                subfolders.append(path.parent.relative_to(base).parts)
            except ValueError:
                subfolders.append(())
    return output_dirs([Path(str(p)) for p in paths], root, subfolders, suffix_in_name=True)


def expand_specs(specs: list[str], exclude: str | None = None) -> list[str]:
    """Expand local paths, folders and globs (as the CLI does, skipping ``exclude``: the output
    root) and fsspec URLs (folders, globs).

    A remote file named without a glob that is neither found nor a folder is kept as it is: its
    fetch fails, and that image alone is reported failed with the reason (the others go on). The
    ``?`` of an http(s) URL starts its query (a presigned URL), never a glob.

    Raises:
        InputError: a local spec matches nothing, or a folder or glob URL holds no raster (the
            message names the URL with its credentials hidden, :func:`~samgeo_pipeline.redact.redact`).
        RemoteReadError: a listing failed (network; retried by the flow).
    """
    local = [local_path(s) for s in specs if not is_remote(s)]
    found = [str(p) for p in expand_inputs(local, exclude)] if local else []
    for spec in (s for s in specs if is_remote(s)):
        found.extend(_expand_remote(spec))
    return list(dict.fromkeys(found))


def _expand_remote(spec: str) -> list[str]:
    """The files one fsspec URL names (see :func:`expand_specs`)."""
    from fsspec.core import url_to_fs

    with remote_errors(spec):
        fs, path = url_to_fs(spec)
        if glob.has_magic(str(url_path(spec))):
            matches = sorted(fs.glob(path))
        elif fs.isdir(path):
            matches = sorted(fs.find(path))
        else:
            return [spec if not fs.exists(path) else fs.unstrip_protocol(path)]
    matches = [m for m in matches if Path(m).suffix.lower() in RASTER_SUFFIXES]
    if not matches:
        raise InputError(f"{redact(spec)}: matches no raster file ({', '.join(RASTER_SUFFIXES)})")
    return [fs.unstrip_protocol(m) for m in matches]


class RemoteInputError(InputError):
    """A remote input does not exist or may not be read (not retried)."""


class RemoteReadError(RasterReadError):
    """Reading or listing a remote input failed (network, server error; retried)."""


@contextmanager
def remote_errors(url: str) -> Iterator[None]:
    """Turn an error of fsspec I/O on ``url`` into a one-line error naming ``url`` with its
    credentials hidden (:func:`~samgeo_pipeline.redact.redact`), its own text redacted as well: a
    backend's message may quote the URL, and the flow logs tracebacks.

    Raises:
        RemoteInputError: not found (fsspec's http also says so when the server cannot be reached),
            access denied, or an unusable URL (unknown protocol, missing backend).
        RemoteReadError: any other error of the backend.
    """
    try:
        yield
    except SamgeoPipelineError:
        raise
    except FileNotFoundError:
        raise RemoteInputError(f"{redact(url)}: not found, or the server cannot be reached; check the URL") from None
    except PermissionError:
        raise RemoteInputError(f"{redact(url)}: access denied; check the credentials") from None
    except (ValueError, ImportError) as exc:
        raise RemoteInputError(_redacted_reason(url, exc)) from None
    except Exception as exc:  # noqa: BLE001 - any backend's error: its text may hold the URL's credentials
        raise RemoteReadError(_redacted_reason(url, exc)) from None


def _redacted_reason(url: str, exc: BaseException) -> str:
    """``URL: ErrorType: first line of its message``, credentials hidden in both."""
    text = redact(first_line(exc)) if str(exc).strip() else ""
    return f"{redact(url)}: {type(exc).__name__}" + (f": {text}" if text else "")


def fetch_to(url: str, staging: Path) -> Path:
    """Copy a remote raster into a new folder ``staging/<hash of url>-<random>/`` and return the copy.

    The folder is created by this call, for this call: the caller removes it with
    :func:`remove_staged` once the image is done (whatever its outcome); a failed copy removes it
    here. The file keeps the URL's file name (no user-info or query: :func:`url_path`),
    made safe (:func:`samgeo_pipeline.io.paths.safe_name`). While the folder lives, this process holds
    its lock (:func:`remove_stale_staging`).
    Nothing staged is ever reused: every call copies afresh, and the copy is checked against the
    store (:func:`check_copy`) before it gets its name. A STAC Item's relative asset hrefs are made
    absolute against ``url`` (:func:`~samgeo_pipeline.io.stac_input.anchor_assets`), so the copy reads
    the assets beside the remote Item.

    Raises:
        StagedCopyError: the copy differs from what the store describes (size, or MD5 ETag).
        RemoteInputError, RemoteReadError: see :func:`remote_errors` (the URL's credentials hidden).
    """
    from fsspec.core import url_to_fs

    staging.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=hashlib.sha1(url.encode()).hexdigest()[:16] + "-", dir=staging))
    try:
        _hold_staging_lock(folder)
        name = safe_name(url_path(url).name or "input")
        target = check_inside(folder / (name if name != STAGING_LOCK else f"_{name}"), folder)
        part = target.with_name(target.name + ".part")
        with remote_errors(url):
            fs, path = url_to_fs(url)
            info = fs.info(path)
            fs.get_file(path, str(part))
        check_copy(url, part, info)
        os.replace(part, target)
        if is_stac_item(target):  # a STAC Item: its relative asset hrefs keep pointing next to its URL
            anchor_assets(target, url)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        _release_staging_lock(folder)
        raise
    return target


class StagedCopyError(RasterReadError):
    """A staged copy of a remote input differs from the store's description of it."""


def check_copy(url: str, copy: Path, info: dict[str, Any]) -> None:
    """Check a fetched ``copy`` of ``url`` against the store's ``info`` (taken before the copy):
    its size, and its MD5 when the store's ETag is one (S3 single-part uploads).

    Raises:
        StagedCopyError: a mismatch (the object changed during the copy, or the copy was cut).
    """
    size = info.get("size")
    if size is not None and copy.stat().st_size != size:
        raise StagedCopyError(f"{redact(url)}: the copy has {copy.stat().st_size} bytes, the store says {size}; "
                              "was it replaced while being read? Run again")
    etag = str(info.get("ETag") or info.get("etag") or "").strip('"')
    if len(etag) == 32 and all(c in "0123456789abcdef" for c in etag.lower()):
        digest = hashlib.md5(usedforsecurity=False)
        with copy.open("rb") as fh:
            for chunk in iter(lambda: fh.read(8 << 20), b""):
                digest.update(chunk)
        if digest.hexdigest() != etag.lower():
            raise StagedCopyError(f"{redact(url)}: the copy's MD5 differs from the store's ETag; run again")


def remove_staged(staged: str | Path, staging: Path) -> None:
    """Remove the folder :func:`fetch_to` created for the copy ``staged``, and nothing else.

    Only a folder directly inside ``staging`` is removed: a path from anywhere else (a manifest, a
    summary) is left alone.
    """
    folder = Path(staged).parent
    if folder.parent.resolve() == Path(staging).resolve() and not folder.is_symlink():
        shutil.rmtree(folder, ignore_errors=True)
        _release_staging_lock(folder)


#: Name of a staging folder :func:`fetch_to` makes (``tempfile.mkdtemp``: 16 hex digits, ``-``, 8 random).
_STAGED_FOLDER = re.compile(r"[0-9a-f]{16}-[A-Za-z0-9_]{8}")
#: The lock file inside each staging folder, held by the process that made the folder while it lives.
STAGING_LOCK = ".samgeo-staging-lock"
#: Open lock files of this process's staging folders (the kernel releases them when it dies).
_STAGING_LOCKS: dict[Path, Any] = {}
_STAGING_LOCKS_GUARD = threading.Lock()


def _hold_staging_lock(folder: Path) -> None:
    """Create and hold (``flock``) the lock file of a staging folder this process just made."""
    fh = open(folder / STAGING_LOCK, "a+b")  # noqa: SIM115 - held until _release_staging_lock
    fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
    with _STAGING_LOCKS_GUARD:
        _STAGING_LOCKS[folder] = fh


def _release_staging_lock(folder: Path) -> None:
    """Close the lock file of a staging folder (once the folder is removed)."""
    with _STAGING_LOCKS_GUARD:
        fh = _STAGING_LOCKS.pop(folder, None)
    if fh is not None:
        fh.close()


def remove_stale_staging(staging: Path) -> list[Path]:
    """Remove the staging folders of runs that died (crash, ``kill -9``) before removing their own.

    A folder is removed only when :func:`fetch_to` made it (its name, a real folder holding
    :data:`STAGING_LOCK`) and no live process holds its lock (tried without waiting): a running
    fetch or image keeps its folder. Anything else in ``staging`` is left alone, and ``staging``
    itself must be a real folder (not a link).

    Returns:
        The folders removed.
    """
    if staging.is_symlink() or not staging.is_dir():
        return []
    removed = []
    for folder in sorted(staging.iterdir()):
        lock = folder / STAGING_LOCK
        if not _STAGED_FOLDER.fullmatch(folder.name) or folder.is_symlink() or not folder.is_dir():
            continue
        try:
            fd = os.open(lock, os.O_RDONLY | os.O_NOFOLLOW)  # no lock file (or a link): not a folder fetch_to made
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a live run's
        else:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
        finally:
            os.close(fd)
    return removed
