"""``manifest.json``: how an output was made, as a typed :class:`Manifest`, read and written here only.

The manifest of one image is a :class:`Manifest` whose nested records mirror the JSON
(``input``, ``model``, ``grid``, ``tiles``, ``water``, ``uncertain``); the sections whose content
another module defines stay plain JSON objects (``parameters``: :meth:`SegmentConfig.to_dict`,
``prompt``, ``radiometry``: :meth:`ImageStats.to_dict`, ``seconds``, ``runtime``, ``versions``).
:func:`load_manifest` reads one (a file without ``manifest_version`` is version 1) and refuses a
version this package does not know (:class:`ManifestVersionError`); :func:`write_manifest` writes
it atomically, last. Its ``tiles`` record, :class:`TileCounts`, is also what a run counts
(:attr:`~samgeo_pipeline.results.SegmentResult.tiles`). This module is the schema only: a finished
image run's manifest is assembled by :func:`~samgeo_pipeline.run.image_manifest.build_manifest`;
whether a manifest lets a run be reused is :mod:`samgeo_pipeline.outputs.reuse`.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, TypedDict

from samgeo_pipeline.errors import ManifestError, ManifestVersionError
from samgeo_pipeline.io.atomic import write_text_atomic

#: The manifest schema this package writes and the newest it reads (``manifest_version``).
MANIFEST_VERSION = 1
MANIFEST_NAME = "manifest.json"
_PACKAGES = ("samgeo-pipeline", "numpy", "torch", "transformers", "rasterio", "shapely", "geopandas", "pyogrio",
             "scikit-image", "opencv-python-headless")


@dataclass(kw_only=True)
class Uncertain:
    """Why the coarse rule abstained on the image, and what the user can do about it."""

    reason: str | None = None
    what_to_do: str | None = None


@dataclass(kw_only=True)
class InputRecord:
    """The input: where it is, its bytes (``sha256``: the reuse key), its grid and band mapping.

    ``source`` is the input as the user named it (credentials hidden); ``band_map_source`` how the
    mapping was chosen; ``datetime`` the acquisition time (:func:`~samgeo_pipeline.outputs.stac.acquisition_datetime`);
    ``stac`` the STAC Item's assets, only for an Item input (left out of the JSON otherwise).
    """

    path: str = ""
    source: str | None = None
    sha256: str | None = None
    bytes: int = 0
    width: int = 0
    height: int = 0
    bands: int = 0
    dtype: str | None = None
    crs: str | None = None
    transform: list[float] = field(default_factory=list)
    nodata: float | None = None
    nodata_source: str | None = None
    band_map: dict[str, Any] = field(default_factory=dict)
    band_map_source: str | None = None
    datetime: dict[str, Any] | None = None
    stac: dict[str, Any] | None = None


@dataclass(kw_only=True)
class ModelRecord:
    """The model used: ``id`` (``none`` for the coarse mask alone), ``fingerprint`` (the reuse key,
    :func:`~samgeo_pipeline.outputs.fingerprint.model_fingerprint`), where the weights came from, its family,
    parameter count, input side, and the device and autocast dtype it ran with."""

    id: str = "none"
    fingerprint: str | None = None
    origin: str | None = None
    family: str | None = None
    parameters: int | None = None
    image_size: int | None = None
    device: str | None = None
    autocast: str | None = None


@dataclass(kw_only=True)
class GridRecord:
    """The tile grid (:class:`~samgeo_pipeline.io.tiling.TileGrid`) and the ``--gsd`` resampling."""

    tile_size: int | None = None
    core_source_px: float | None = None
    halo_source_px: float | None = None
    source_px_per_working_px: float | None = None
    gsd_unit: str | None = None  # "metre", "source pixel"; None without --gsd (or before --gsd was metres)
    gsd_note: str | None = None
    rows: int | None = None
    cols: int | None = None
    model_px_per_image_px: float | None = None


class FailedTile(TypedDict):
    """A tile SAM could not segment (written as nodata): grid row and column, and the one-line reason."""

    row: int
    col: int
    reason: str


@dataclass
class TileCounts:
    """How many tiles went which way; ``failed_tiles`` lists each failed tile with its reason."""

    total: int = 0
    sam: int = 0
    coarse_only: int = 0
    skipped: int = 0
    failed: int = 0
    failed_tiles: list[FailedTile] = field(default_factory=list)


@dataclass(kw_only=True)
class WaterRecord:
    """The water found: fraction of the valid pixels, area in m² (None without a ground size), polygons."""

    fraction_of_valid: float | None = None
    area_m2: float | None = None
    polygons: int | None = None


#: The nested records of :class:`Manifest`, by key.
_RECORDS: dict[str, type] = {"uncertain": Uncertain, "input": InputRecord, "model": ModelRecord,
                             "grid": GridRecord, "tiles": TileCounts, "water": WaterRecord}


@dataclass(kw_only=True)
class Manifest:
    """One image's ``manifest.json``; its fields in the JSON's order.

    Attributes:
        manifest_version: the schema version (:data:`MANIFEST_VERSION` when written).
        created: local time of writing, ``%Y-%m-%dT%H:%M:%S%z``.
        status: ``done``, ``partial``, ``uncertain`` (``failed`` runs write no manifest).
        error: the reason of a ``partial`` run, else None.
        uncertain: the rule's abstention, else None.
        parameters: every option (:meth:`SegmentConfig.to_dict`); ``params_hash`` their hash (a reuse key).
        prompt: the prompt kind, and for text prompts the phrases and how they were combined.
        radiometry: the whole-image statistics and the coarse rule (:meth:`ImageStats.to_dict`).
        seconds: time per stage and ``total``; ``runtime``: host, process, device, who ran it.
        versions: the packages that shape the outputs (``samgeo-pipeline``: a reuse key), GDAL, Python.
        warnings: the image's warnings; ``outputs``: the files written beside it (names).
    """

    manifest_version: int = MANIFEST_VERSION
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    status: str = "done"
    error: str | None = None
    uncertain: Uncertain | None = None
    input: InputRecord = field(default_factory=InputRecord)
    parameters: dict[str, Any] = field(default_factory=dict)
    params_hash: str | None = None
    prompt: dict[str, Any] = field(default_factory=dict)
    model: ModelRecord = field(default_factory=ModelRecord)
    radiometry: dict[str, Any] = field(default_factory=dict)
    grid: GridRecord = field(default_factory=GridRecord)
    tiles: TileCounts = field(default_factory=TileCounts)
    water: WaterRecord = field(default_factory=WaterRecord)
    seconds: dict[str, float] = field(default_factory=dict)
    runtime: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str | None] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written (``input.stac`` only for a STAC Item input)."""
        data = dataclasses.asdict(self)
        if data["input"].get("stac") is None:
            del data["input"]["stac"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: Path | str = MANIFEST_NAME) -> Manifest:
        """A manifest from its JSON object; missing keys take their defaults, unknown keys are dropped.

        Raises:
            ManifestVersionError: ``manifest_version`` is newer than, or unknown to, this package.
            ManifestError: not a segment manifest (no ``input`` object or no ``status``).
        """
        check_version(data, path)
        if not (isinstance(data.get("input"), dict) and "status" in data):
            raise ManifestError(f"{path}: not a segment manifest of samgeo-pipeline (no input or status); "
                                "pass the output folder of a segment run")
        values = _known(cls, data)
        for key, record in _RECORDS.items():
            if isinstance(values.get(key), dict):
                values[key] = record(**_known(record, values[key]))
            elif key != "uncertain":
                values.pop(key, None)  # not an object: the default record
        values["manifest_version"] = data.get("manifest_version", 1)
        return cls(**values)


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in names}


def check_version(data: Any, path: Path | str) -> None:
    """Refuse a manifest this package cannot read: one that is not a JSON object, or whose
    ``manifest_version`` is not a version up to :data:`MANIFEST_VERSION` (missing: version 1).

    Raises:
        ManifestError: not a JSON object.
        ManifestVersionError: a newer or unknown version; the message says to upgrade.
    """
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: not a manifest of samgeo-pipeline (not a JSON object)")
    version = data.get("manifest_version", 1)
    if not (isinstance(version, int) and not isinstance(version, bool) and 1 <= version <= MANIFEST_VERSION):
        raise ManifestVersionError(
            f"{path}: manifest version {version!r} was written by a newer or unknown samgeo-pipeline (this one reads "
            f"up to {MANIFEST_VERSION}); upgrade samgeo-pipeline, or write to another output root (--out)"
        )


def read_manifest_json(path: Path) -> dict[str, Any]:
    """The JSON object of a manifest file (a segment or a change manifest), its version checked.

    Raises:
        ManifestError: unreadable, not JSON or not an object.
        ManifestVersionError: see :func:`check_version`.
    """
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ManifestError(f"{path}: not a readable manifest ({type(exc).__name__}); "
                            "run segment on the image (again)") from None
    check_version(data, path)
    assert isinstance(data, dict)  # check_version refuses anything else
    return data


def load_manifest(path: Path) -> Manifest:
    """The segment :class:`Manifest` in ``path`` (see :meth:`Manifest.from_dict` for what is refused)."""
    return Manifest.from_dict(read_manifest_json(path), path)


def write_manifest(path: Path, manifest: Manifest | dict[str, Any]) -> Path:
    """Write ``manifest.json`` atomically (last, so its presence means the run finished)."""
    data = manifest.to_dict() if isinstance(manifest, Manifest) else manifest
    write_text_atomic(path, json.dumps(data, indent=2, default=str))
    return path


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
