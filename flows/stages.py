"""Plain functions of the segment flow's stages (no Prefect): expand, fetch, prepare, summarise, model cache.

The tasks of :mod:`flows.segment` wrap these; tests call them directly.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flows.common import is_remote, local_path, url_path
from samgeo_pipeline.config import SegmentConfig
from samgeo_pipeline.errors import InputError, RasterReadError, SamgeoPipelineError, first_line
from samgeo_pipeline.io.folders import LOCK_NAME, output_lock, remove_partials  # noqa: F401 - the flows' names
from samgeo_pipeline.io.limits import check_size
from samgeo_pipeline.io.paths import check_inside, safe_name
from samgeo_pipeline.io.raster import RASTER_SUFFIXES, expand_inputs, inspect_raster
from samgeo_pipeline.io.stac_input import anchor_assets, inspect_item, is_stac_item
from samgeo_pipeline.outputs.fingerprint import file_sha256
from samgeo_pipeline.outputs.manifest import MANIFEST_NAME, Manifest
from samgeo_pipeline.outputs.reuse import decide_reuse
from samgeo_pipeline.redact import redact


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
    here. The file keeps the URL's file name (no user-info or query: :func:`flows.common.url_path`),
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


def prepare(
    path: str, out_dir: str, config: SegmentConfig, root: str | None = None, source: str | None = None
) -> dict[str, Any]:
    """CPU stage of one image: check it opens with the requested bands and is within the size limits,
    hash it (the flow's one hash of the input) and decide reuse (the image's one decision,
    :func:`~samgeo_pipeline.outputs.reuse.decide_reuse`).

    Args:
        path: the local file (a staged copy for a remote input).
        out_dir: its output folder; checked to resolve inside ``root`` when given.
        source: the input as the user named it (the URL of a staged copy); default ``path``.

    Returns:
        ``sha256``, ``reusable`` and ``reused`` (the :func:`summarize` of the reusable manifest,
        status ``skipped``; None when the image is to run) among the input's facts.

    Raises:
        InputError, RasterReadError: the file is not a usable raster.
        SizeLimitError: over a size limit (:func:`samgeo_pipeline.io.limits.check_size`).
        UnsafePathError: ``out_dir`` resolves outside ``root``.
        OutputConflictError: ``out_dir`` holds another input's outputs or the user's files.
        ManifestVersionError: its manifest was written by a newer samgeo-pipeline.
    """
    if root is not None:
        check_inside(Path(out_dir), Path(root))
    if is_stac_item(path):  # read as the VRT of its mapped assets, as RasterRun does
        info, checksum = inspect_item(path, config.bands, config.nodata)
    else:
        info = inspect_raster(path, config.bands, config.nodata)
        checksum = file_sha256(Path(path))
    check_size(info, config)
    shown = redact(source or str(path))
    previous = decide_reuse(Path(out_dir), checksum, config, shown).previous
    return {
        "input": str(path),
        "source": shown,
        "out_dir": str(out_dir),
        "sha256": checksum,
        "bytes": Path(path).stat().st_size,
        "width": info.width,
        "height": info.height,
        "bands": info.count,
        "reusable": previous is not None,
        "reused": summarize(previous, "skipped", Path(out_dir), shown) if previous is not None else None,
    }


def summarize(manifest: Manifest, status: str, out_dir: Path, source: str | None = None) -> dict[str, Any]:
    """JSON-able summary of one image from its manifest (paths as strings; no arrays).

    ``source``: this run's input (a reused manifest names the run that made it); default: the
    manifest's. ``uncertain``: the coarse rule's reason when it abstained on the image (any status),
    else None.
    """
    tiles = manifest.tiles
    return {
        "input": redact(source or manifest.input.source or manifest.input.path),
        "out_dir": str(out_dir),
        "sha256": manifest.input.sha256,
        "status": status,
        "error": manifest.error,
        "uncertain": manifest.uncertain.reason if manifest.uncertain else None,
        "tiles": {"total": tiles.total, "sam": tiles.sam, "coarse_only": tiles.coarse_only, "skipped": tiles.skipped,
                  "failed": tiles.failed},
        "water_area_m2": manifest.water.area_m2,
        "water_fraction": manifest.water.fraction_of_valid,
        "polygons": manifest.water.polygons,
        "seconds": manifest.seconds.get("total"),
        "model": manifest.model.id,
        "params_hash": manifest.params_hash,
        "outputs": [str(out_dir / name) for name in manifest.outputs] + [str(out_dir / MANIFEST_NAME)],
    }


class _PredictorCache:
    """One SAM predictor per (flow run, model, device, precision): loaded on first use, dropped at the end."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[tuple[str, str, str, str], tuple[Any, Any]] = {}

    def get(self, run_id: str, config: SegmentConfig, log) -> tuple[Any, Any]:
        from samgeo_pipeline.run.batch import describe_model, load_predictor

        key = (run_id, config.model, config.device, config.precision)
        with self._lock:
            if key not in self._items:
                predictor, source = load_predictor(config)
                log(describe_model(config, predictor, source))
                self._items[key] = (predictor, source)
            return self._items[key]

    def release(self, run_id: str) -> None:
        with self._lock:
            for key in [k for k in self._items if k[0] == run_id]:
                del self._items[key]
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:  # pragma: no cover
            pass

    def __len__(self) -> int:
        return len(self._items)


PREDICTORS = _PredictorCache()
