"""Whether an image's outputs may be reused: decided once per image, by :func:`decide_reuse`.

A run is reused only when it finished (status ``done``, or ``uncertain``: the rule abstained, which
the same bytes and parameters would do again) and the manifest names the same input checksum,
parameter hash, package version and model fingerprint
(:func:`~samgeo_pipeline.outputs.fingerprint.model_fingerprint`: the bytes of the files a local
model is loaded from, so retraining into the same folder is never mistaken for the old model), and
every listed output still exists. When it is not reused, the folder must not hold another input's
outputs or the user's own files (:func:`check_folder_owner`). The command line decides in
:class:`~samgeo_pipeline.run.image.RasterRun`; the segment flow decides in its prepare task, which
hashes the input once, and hands the decision (:class:`Reuse`) to the run. The Prefect flow's
cache key uses the same fingerprint.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from samgeo_pipeline.config import SegmentConfig
from samgeo_pipeline.errors import ManifestError, ManifestVersionError, OutputConflictError
from samgeo_pipeline.io.folders import LOCK_NAME, OUTPUT_NAMES
from samgeo_pipeline.outputs.fingerprint import model_fingerprint
from samgeo_pipeline.outputs.manifest import MANIFEST_NAME, Manifest, load_manifest, read_manifest_json


@dataclass(frozen=True)
class Reuse:
    """The reuse decision of one image: its input's SHA-256 and the manifest to reuse (None: run it)."""

    checksum: str
    previous: Manifest | None = None


def decide_reuse(out_dir: Path, checksum: str, config: SegmentConfig, source: str) -> Reuse:
    """Decide once whether ``out_dir``'s outputs may be reused for the input of ``checksum``.

    With ``config.overwrite`` nothing is reused nor checked. Otherwise the reusable manifest
    (:func:`find_reusable`), or, when there is none, the folder is checked to be this input's to
    write (:func:`check_folder_owner`; ``source``: the input as the user named it).

    Raises:
        OutputConflictError: see :func:`check_folder_owner`.
        ManifestVersionError: the folder's manifest was written by a newer samgeo-pipeline.
    """
    if config.overwrite:
        return Reuse(checksum)
    previous = find_reusable(out_dir, checksum, config)
    if previous is None:
        check_folder_owner(out_dir, source, checksum)
    return Reuse(checksum, previous)


def find_reusable(out_dir: Path, checksum: str, config: SegmentConfig) -> Manifest | None:
    """The previous manifest if it finished (``done`` or ``uncertain``), was made from the same bytes,
    parameters, package version and model weights (:func:`model_fingerprint`) and all its outputs
    exist (``item.json`` among them), else None (also for a missing or unreadable manifest).

    Raises:
        ManifestVersionError: the manifest was written by a newer samgeo-pipeline (never replaced
            by an older one).
    """
    try:
        manifest = load_manifest(out_dir / MANIFEST_NAME)
    except ManifestVersionError:
        raise
    except ManifestError:
        return None
    same = (
        manifest.input.sha256 == checksum
        and manifest.params_hash == config.params_hash()
        and manifest.status in ("done", "uncertain")
        and manifest.versions.get("samgeo-pipeline") == _own_version()
        and manifest.model.fingerprint == model_fingerprint(config.model)
        and all(isinstance(name, str) and (out_dir / name).is_file() for name in manifest.outputs)
        and (out_dir / "item.json").is_file()  # a folder finished before STAC Items were written is redone
        # --gsd was CRS units before it was metres: such a manifest (no gsd_unit) is not reused
        and (config.gsd is None or bool(manifest.grid.gsd_unit))
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
        ManifestVersionError: the folder's manifest was written by a newer samgeo-pipeline.
    """
    manifest_path = out_dir / MANIFEST_NAME
    if not manifest_path.exists() and not manifest_path.is_symlink():
        foreign = [] if (out_dir / LOCK_NAME).exists() else [n for n in OUTPUT_NAMES if (out_dir / n).exists()]
        if foreign:
            raise OutputConflictError(
                f"{source}: {out_dir} holds files this pipeline did not write ({', '.join(foreign)}); "
                "write to another output root (--out) or pass --overwrite to replace them"
            )
        return
    try:
        previous = read_manifest_json(manifest_path)
    except ManifestVersionError:
        raise
    except ManifestError:
        previous = None
    if not (isinstance(previous, dict) and "manifest_version" in previous and isinstance(previous.get("input"), dict)):
        raise OutputConflictError(
            f"{source}: {manifest_path} is not a manifest of samgeo-pipeline (the user's own file?); "
            "write to another output root (--out) or pass --overwrite to replace it"
        )
    owner_input = previous["input"]
    owner = owner_input.get("source") or owner_input.get("path")
    if not owner or owner_input.get("sha256") == checksum or _same_source(owner, source):
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
