"""The segment flow's plain steps (no Prefect): its configuration, one image's prepare and summary,
and the run's model cache.

The tasks of :mod:`flows.segment_tasks` wrap these; tests call them directly. Expanding and
fetching the inputs are in :mod:`flows.inputs`.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from samgeo_pipeline.config import SegmentConfig, load_config_file
from samgeo_pipeline.io.limits import check_size
from samgeo_pipeline.io.paths import check_inside
from samgeo_pipeline.io.raster import inspect_raster
from samgeo_pipeline.io.stac_input import inspect_item, is_stac_item
from samgeo_pipeline.outputs.fingerprint import file_sha256
from samgeo_pipeline.outputs.manifest import MANIFEST_NAME, Manifest
from samgeo_pipeline.outputs.reuse import decide_reuse
from samgeo_pipeline.redact import redact


def build_config(options: dict[str, Any] | None = None, config_path: str | os.PathLike[str] | None = None) -> SegmentConfig:
    """Layer defaults < YAML file < ``options`` (keys as :class:`SegmentConfig` / the CLI flags).

    Progress bars are turned off: flow logs are not terminals.

    Raises:
        ConfigError: an unknown option, a bad value, or an unreadable file.
    """
    config = SegmentConfig()
    if config_path:
        config = config.merged(load_config_file(config_path))
    config = config.merged(dict(options or {}))
    return config.merged({"progress": False})


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
