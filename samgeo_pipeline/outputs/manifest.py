"""``manifest.json``: everything needed to know how an output was made, and to skip re-runs.

A run is reused only when it finished (status ``done``, or ``uncertain``: the rule abstained, which
the same bytes and parameters would do again) and the manifest names the same input checksum,
parameter hash, package version and model fingerprint (:func:`model_fingerprint`: the bytes of the
files a local model is loaded from, so retraining into the same folder is never mistaken for the
old model), and every listed output still exists. The Prefect flow's cache key uses the same
fingerprint.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from samgeo_pipeline.io.atomic import write_text_atomic
from samgeo_pipeline.config import SegmentConfig
from samgeo_pipeline.errors import ModelUnavailableError, OutputConflictError
from samgeo_pipeline.io.folders import LOCK_NAME, OUTPUT_NAMES
from samgeo_pipeline.results import SegmentResult, uncertain_hint
from samgeo_pipeline.models.sam3 import prompt_record
from samgeo_pipeline.sam.weights import weight_files

if TYPE_CHECKING:
    from samgeo_pipeline.water.radiometry import ImageStats
    from samgeo_pipeline.io.raster import RasterInfo
    from samgeo_pipeline.models.base import Predictor
    from samgeo_pipeline.sam.predictor import ModelSource
    from samgeo_pipeline.io.tiling import TileGrid

MANIFEST_VERSION = 1
_PACKAGES = ("samgeo-pipeline", "numpy", "torch", "transformers", "rasterio", "shapely", "geopandas", "pyogrio",
             "scikit-image", "opencv-python-headless")


def file_sha256(path: Path, chunk: int = 8 << 20) -> str:
    """SHA-256 of a file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def model_fingerprint(model: str) -> str:
    """What identifies the weights ``model`` names (``--model``), for reuse and the flow's cache.

    ``none`` for the coarse mask alone; for a local folder the SHA-256 of the bytes (names
    included) of exactly the weight files that are loaded (:func:`~samgeo_pipeline.sam.weights.weight_files`:
    ``model.safetensors``, or the index and every shard it names) and of its ``*.json`` files
    (configs, checkpoint meta); ``unloadable:`` and the reason for a folder whose weights are
    refused (never reused: no finished run used it); for a hub id the id and, when the Hugging
    Face cache holds it, the cached snapshot's revision (else the id alone).
    """
    if model.lower() == "none":
        return "none"
    path = Path(model).expanduser()
    if path.exists():
        folder = path.resolve()
        try:
            weights = weight_files(folder) if folder.is_dir() else [folder]
        except ModelUnavailableError as exc:
            return f"unloadable:{hashlib.sha256(str(exc).encode()).hexdigest()[:16]}"
        configs = [f for f in folder.glob("*.json") if f.is_file()] if folder.is_dir() else []
        digest = hashlib.sha256()
        for f in sorted(set(weights) | set(configs)):
            stat = f.stat()
            name = f.relative_to(folder).as_posix() if folder.is_dir() else f.name
            digest.update(f"{name}:{_file_digest(f.resolve(), stat.st_size, stat.st_mtime_ns)}\n".encode())
        return f"sha256:{digest.hexdigest()}"
    return f"{model}@{_hub_revision(model) or 'unknown revision'}"


@functools.lru_cache(maxsize=64)
def _file_digest(path: Path, size: int, mtime_ns: int) -> str:
    """``file_sha256`` memoized per (path, size, mtime): a batch hashes a model's weights once."""
    return file_sha256(path)


def _hub_revision(repo_id: str) -> str | None:
    """The revision of the cached snapshot of ``repo_id``'s weights, or None (not cached, not a repo id)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, "config.json")
    except (ValueError, OSError, ImportError):
        return None
    if not isinstance(found, str):
        return None
    parts = Path(found).parts
    return parts[parts.index("snapshots") + 1] if "snapshots" in parts else None


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages that shape the outputs, plus GDAL and Python."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    import rasterio

    versions["gdal"] = rasterio.__gdal_version__
    return versions


def find_reusable(out_dir: Path, checksum: str, config: SegmentConfig) -> dict[str, Any] | None:
    """The previous manifest if it finished (``done`` or ``uncertain``), was made from the same bytes,
    parameters, package version and model weights (:func:`model_fingerprint`) and all its outputs
    exist (``item.json`` among them), else None."""
    path = out_dir / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict):
        return None
    same = (
        manifest.get("input", {}).get("sha256") == checksum
        and manifest.get("params_hash") == config.params_hash()
        and manifest.get("status") in ("done", "uncertain")
        and manifest.get("versions", {}).get("samgeo-pipeline") == _own_version()
        and manifest.get("model", {}).get("fingerprint") == model_fingerprint(config.model)
        and all((out_dir / name).is_file() for name in manifest.get("outputs", []))
        and (out_dir / "item.json").is_file()  # a folder finished before STAC Items were written is redone
        # --gsd was CRS units before it was metres: such a manifest (no gsd_unit) is not reused
        and (config.gsd is None or bool((manifest.get("grid") or {}).get("gsd_unit")))
    )
    return manifest if same else None


def _own_version() -> str | None:
    try:
        return metadata.version("samgeo-pipeline")
    except metadata.PackageNotFoundError:
        return None


def check_folder_owner(out_dir: Path, source: str, checksum: str) -> None:
    """Refuse to replace the finished outputs of another input (called unless ``overwrite``).

    ``out_dir`` belongs to another input when its ``manifest.json`` names another source (the input
    as the user named it; the file path in manifests without one) *and* other bytes: two runs
    whose inputs share a name (``A/scene.tif``, ``B/scene.tif``) must not silently overwrite each
    other. The same source with changed bytes is a re-run (processed again), and the same bytes
    under another name make the same outputs (reused or redone, never lost). A folder this pipeline
    wrote in (its manifest, or the lock file of :func:`~samgeo_pipeline.io.folders.output_lock`)
    without a finished manifest holds no finished outputs and may be written; a ``manifest.json``
    that is not a manifest of this pipeline, or output names (``quicklook.png``...) in a folder it
    never wrote in, are the user's own files and are not replaced.

    Raises:
        OutputConflictError: the folder holds another input's outputs, or files of the user; the
            message says to pass another output root or ``--overwrite``.
    """
    manifest_path = out_dir / "manifest.json"
    if not manifest_path.exists() and not manifest_path.is_symlink():
        foreign = [] if (out_dir / LOCK_NAME).exists() else [n for n in OUTPUT_NAMES if (out_dir / n).exists()]
        if foreign:
            raise OutputConflictError(
                f"{source}: {out_dir} holds files this pipeline did not write ({', '.join(foreign)}); "
                "write to another output root (--out) or pass --overwrite to replace them"
            )
        return
    try:
        previous = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        previous = None
    if not (isinstance(previous, dict) and "manifest_version" in previous and isinstance(previous.get("input"), dict)):
        raise OutputConflictError(
            f"{source}: {manifest_path} is not a manifest of samgeo-pipeline (the user's own file?); "
            "write to another output root (--out) or pass --overwrite to replace it"
        )
    previous = previous["input"]
    owner = previous.get("source") or previous.get("path")
    if not owner or previous.get("sha256") == checksum or _same_source(owner, source):
        return
    raise OutputConflictError(
        f"{source}: {out_dir} holds the outputs of another input ({owner}); "
        "write to another output root (--out) or pass --overwrite to replace them"
    )


def _same_source(a: str, b: str) -> bool:
    if a == b:
        return True
    if "://" in a or "://" in b:
        return False
    return Path(a).resolve() == Path(b).resolve()


def build_manifest(
    info: RasterInfo,
    checksum: str,
    config: SegmentConfig,
    model_source: ModelSource | None,
    predictor: Predictor | None,
    stats: ImageStats,
    grid: TileGrid,
    result: SegmentResult,
    outputs: list[Path],
    run_warnings: list[str],
    source: str | None = None,
    bands_source: str | None = None,
    runner: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest of one finished run (JSON-able); ``source``: the input as the user named it;
    ``runner``: who ran it, added to ``runtime`` (:func:`runtime_info`), e.g. a Prefect worker's name;
    ``bands_source``: how the band mapping was chosen when a caller chose it (a watch rule), else
    the mapping's own source (``given``, ``descriptions`` or ``guessed``). ``uncertain`` is None, or
    the rule's ``reason`` and ``what_to_do`` when it abstained on the image."""
    tiles = result.tiles
    runtime = {**runtime_info(predictor), **(runner or {})}
    return {
        "manifest_version": MANIFEST_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "status": result.status,
        "error": result.error,
        "uncertain": _uncertain(result, stats),
        "input": {
            "path": str(info.path),
            "source": source if source is not None else str(info.path),
            "sha256": checksum,
            "bytes": info.path.stat().st_size,
            "width": info.width,
            "height": info.height,
            "bands": info.count,
            "dtype": info.dtype,
            "crs": info.crs.to_string() if info.crs else None,
            "transform": list(info.transform)[:6],
            "nodata": info.nodata,
            "nodata_source": info.nodata_source,
            "band_map": info.bands.as_dict(),
            "band_map_source": bands_source or info.bands.source,
        },
        "parameters": config.to_dict(),
        "params_hash": config.params_hash(),
        "prompt": prompt_record(config, stats.coarse.uncertain),
        "model": {
            "id": config.model if config.uses_sam else "none",
            "fingerprint": model_fingerprint(config.model),
            "origin": model_source.origin if model_source else "coarse mask only (--model none)",
            **_model_size(model_source, predictor),
            "device": runtime["device"] if predictor else None,
            "autocast": str(predictor.autocast_dtype).replace("torch.", "") if predictor and predictor.autocast_dtype else None,
        },
        "radiometry": stats.to_dict(),
        "grid": {
            "tile_size": grid.tile_size,
            "core_source_px": grid.core,
            "halo_source_px": grid.halo,
            "source_px_per_working_px": grid.scale,
            "gsd_unit": None if config.gsd is None else "metre" if info.georeferenced else "source pixel",
            "gsd_note": _gsd_note(info, config.gsd),
            "rows": grid.rows,
            "cols": grid.cols,
            "model_px_per_image_px": round(grid.model_pixels_per_image_pixel(), 3),
        },
        "tiles": {
            "total": tiles.total,
            "sam": tiles.sam,
            "coarse_only": tiles.coarse_only,
            "skipped": tiles.skipped,
            "failed": tiles.failed,
            "failed_tiles": tiles.failed_tiles,
        },
        "water": {
            "fraction_of_valid": result.water_fraction,
            "area_m2": result.water_area_m2,
            "polygons": result.polygons,
        },
        "seconds": {k: round(v, 3) for k, v in result.seconds.items()},
        "runtime": runtime,
        "versions": package_versions(),
        "warnings": run_warnings,
        "outputs": [p.name for p in outputs],
    }


def runtime_info(predictor: Predictor | None) -> dict[str, Any]:
    """Where an image ran: host, process, the device actually used (``cuda:N`` as this process
    numbers it, with the card's name; ``cpu`` for ``--model none``, whose coarse mask is computed
    on the CPU) and ``CUDA_VISIBLE_DEVICES``, which maps ``N`` to the machine's card."""
    device = predictor.device if predictor is not None else None
    label = str(device) if device is not None else "cpu"
    name: str | None = None
    if device is not None and device.type == "cuda":
        import torch

        index = device.index if device.index is not None else torch.cuda.current_device()
        label, name = f"cuda:{index}", torch.cuda.get_device_name(index)
    return {
        "host": platform.node(),
        "pid": os.getpid(),
        "device": label,
        "device_name": name,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }


def _model_size(model_source: ModelSource | None, predictor: Predictor | None) -> dict[str, Any]:
    """The manifest's ``family`` (``config.json``'s ``model_type``), ``parameters`` and ``image_size``
    (the model's input side) of the model used, all None without one; the last two None for a
    predictor without a torch model behind it (the stand-ins of tests and benchmarks)."""
    if model_source is None or predictor is None:
        return {"family": None, "parameters": None, "image_size": None}
    model: Any = getattr(predictor, "model", None)  # stand-ins of tests have none
    parameters = sum(p.numel() for p in model.parameters()) if hasattr(model, "parameters") else None
    return {"family": model_source.family, "parameters": parameters, "image_size": getattr(predictor, "image_size", None)}


def _gsd_note(info: RasterInfo, gsd: float | None) -> str | None:
    from samgeo_pipeline.io.ground import gsd_note

    return gsd_note(info, gsd)


def _uncertain(result: SegmentResult, stats: ImageStats) -> dict[str, str] | None:
    """The manifest's ``uncertain`` entry: why the rule abstained and what the user can do."""
    if result.uncertain is None:
        return None
    return {"reason": result.uncertain, "what_to_do": uncertain_hint(stats.coarse.method)}


def write_manifest(path: Path, manifest: dict[str, Any]) -> Path:
    """Write ``manifest.json`` atomically (last, so its presence means the run finished)."""
    write_text_atomic(path, json.dumps(manifest, indent=2, default=str))
    return path
