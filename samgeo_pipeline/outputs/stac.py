"""STAC out: an ``item.json`` per finished output folder, and a ``catalog.json`` per output root.

:func:`build_item` makes the Item (pystac) from a run's manifest and the files beside it:
footprint and bbox in WGS84 from the grid (the raster's outline, densified, reprojected), the
input's acquisition datetime (:func:`acquisition_datetime`, which says where it came from), the
projection extension (code or WKT2, shape, transform), the raster and classification extensions
on ``mask.tif`` (0 not water, 1 water, 255 nodata), the file extension (size, multihash SHA-256)
on each data file, and the processing extension (software and version, the model and its
fingerprint). An ``uncertain`` image (no mask: the coarse rule abstained) gets an Item too, without
the mask and polygon assets, saying so in ``samgeo:status`` and ``samgeo:uncertain``. The Item is
written before the manifest, so it lists the manifest as an asset without size or checksum.

:func:`~samgeo_pipeline.outputs.stac_catalog.register_item` adds a finished folder to the root's
``catalog.json`` (relative links, a self-contained catalog), atomically and under a file lock, so
several processes may finish images of the same root at once.
:func:`~samgeo_pipeline.outputs.stac_catalog.rebuild_remote_catalog` does the same for an fsspec
root (S3): see its docstring for why that is safe without a lock. :func:`validate_offline` validates Items and
catalogs against the core STAC schemas pystac ships, and the extensions through pystac's own
models; nothing is downloaded.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

from samgeo_pipeline.io.atomic import write_text_atomic
from samgeo_pipeline.io.dates import date_from_name, parse_datetime, sensor_datetime
from samgeo_pipeline.outputs.fingerprint import file_sha256
from samgeo_pipeline.outputs.manifest import Manifest

ITEM_NAME = "item.json"
PROCESSING_SCHEMA = "https://stac-extensions.github.io/processing/v1.2.0/schema.json"
COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
#: Mask values and their classes (``outputs.writers.MASK_NODATA`` is 255).
MASK_CLASSES = ((0, "not_water", "Not water", False), (1, "water", "Water", True), (255, "nodata", "No data", None))


# --------------------------------------------------------------------------- datetime


def acquisition_datetime(tags: dict[str, dict[str, str]], name: str) -> dict[str, str | None]:
    """When the input was acquired, and where that came from.

    A STAC Item's datetime first (the VRT of :mod:`samgeo_pipeline.io.stac_input`), then what
    :mod:`samgeo_pipeline.io.dates` reads everywhere else, in its order: sensor tags, a date in the
    file name (a year alone: the whole year as a range), ``TIFFTAG_DATETIME`` last.

    Args:
        tags: metadata domain (``""`` for the default one) -> tags, as rasterio's ``tags(ns=...)``.
        name: the input's file name.

    Returns:
        ``{"datetime", "start_datetime", "end_datetime", "source"}`` (ISO 8601, UTC); all None but
        ``source`` when nothing says it (``source`` is then None as well).
    """
    from samgeo_pipeline.io.stac_input import STAC_DOMAIN

    def found(value: dt.datetime, source: str) -> dict[str, str | None]:
        return {"datetime": _iso(value), "start_datetime": None, "end_datetime": None, "source": source}

    if (item := parse_datetime(tags.get(STAC_DOMAIN, {}).get("DATETIME"))) is not None:
        return found(item, "STAC item")
    if (sensor := sensor_datetime(tags)) is not None:
        return found(sensor[0], f"tag {sensor[1]}")
    if (named := date_from_name(Path(name).stem)) is not None:
        day, precision = named
        start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc)
        if precision == "day":
            return found(start, "file name")
        end = dt.datetime(day.year, 12, 31, 23, 59, 59, tzinfo=dt.timezone.utc)
        return {"datetime": None, "start_datetime": _iso(start), "end_datetime": _iso(end), "source": "file name (year)"}
    if (written := parse_datetime(tags.get("", {}).get("TIFFTAG_DATETIME"))) is not None:
        return found(written, "tag TIFFTAG_DATETIME")
    return {"datetime": None, "start_datetime": None, "end_datetime": None, "source": None}


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def read_tags(path: Path) -> dict[str, dict[str, str]]:
    """The default, ``IMAGERY`` and STAC-input metadata domains of a raster (empty when unreadable)."""
    import rasterio
    from rasterio.errors import RasterioError

    from samgeo_pipeline.io.stac_input import STAC_DOMAIN

    try:
        with rasterio.open(path) as ds:
            return {ns: dict(ds.tags(ns=ns or None)) for ns in ("", "IMAGERY", STAC_DOMAIN)}
    except RasterioError:
        return {}


# --------------------------------------------------------------------------- item


def footprint(
    crs_text: str | None, transform: list[float], width: int, height: int, per_side: int = 16
) -> dict[str, Any] | None:
    """The raster's outline in WGS84 (GeoJSON Polygon, ``per_side`` points per side), or None without a CRS."""
    if not crs_text:
        return None
    from rasterio.crs import CRS
    from rasterio.transform import Affine
    from rasterio.warp import transform as warp

    t = Affine(*transform[:6])
    steps = [i / per_side for i in range(per_side)]
    ring = ([(s * width, 0) for s in steps] + [(width, s * height) for s in steps]
            + [((1 - s) * width, height) for s in steps] + [(0, (1 - s) * height) for s in steps])  # fmt: skip
    xs, ys = zip(*(t @ p for p in ring), strict=True)
    lon, lat = warp(CRS.from_user_input(crs_text), CRS.from_epsg(4326), list(xs), list(ys))
    coords = [[round(x, 8), round(y, 8)] for x, y in zip(lon, lat, strict=True)]
    return {"type": "Polygon", "coordinates": [coords + [coords[0]]]}


def _bbox(geometry: dict[str, Any] | None) -> list[float] | None:
    if geometry is None:
        return None
    xs, ys = zip(*geometry["coordinates"][0], strict=True)
    return [min(xs), min(ys), max(xs), max(ys)]


def multihash_sha256(path: Path) -> str:
    """The file extension's ``file:checksum``: multihash of SHA-256 (``1220`` + hex digest)."""
    return "1220" + file_sha256(path)


def build_item(out_dir: Path, manifest: Manifest, item_id: str | None = None) -> Any:
    """The STAC Item (``pystac.Item``) of one output folder, from its manifest (written after it).

    Asset hrefs are relative (``./mask.tif``): the folder can move or be served as it is.
    """
    import pystac
    from pystac.extensions.projection import ProjectionExtension

    inp = manifest.input
    geometry = footprint(inp.crs, inp.transform, inp.width, inp.height)
    when = inp.datetime or {}
    created = _iso(parse_datetime(manifest.created) or dt.datetime.now(dt.timezone.utc))
    instant = when.get("datetime") or (None if when.get("start_datetime") else created)
    properties: dict[str, Any] = {
        "samgeo:status": manifest.status,
        "samgeo:datetime_source": when.get("source") or "none found: the run's time",
        "samgeo:input": inp.source,
        "samgeo:model": {"id": manifest.model.id, "fingerprint": manifest.model.fingerprint},
        "samgeo:water_fraction": manifest.water.fraction_of_valid,
        "samgeo:water_area_m2": manifest.water.area_m2,
    }
    if manifest.uncertain:
        properties["samgeo:uncertain"] = dataclasses.asdict(manifest.uncertain)
    item = pystac.Item(
        id=item_id or out_dir.name, geometry=geometry, bbox=_bbox(geometry),
        datetime=_to_datetime(instant), properties=properties,
        start_datetime=_to_datetime(when.get("start_datetime")), end_datetime=_to_datetime(when.get("end_datetime")),
    )  # fmt: skip
    item.common_metadata.created = _to_datetime(created)
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    crs = inp.crs
    epsg = _epsg(crs)
    proj.apply(epsg=epsg, wkt2=None if epsg or not crs else _wkt2(crs), shape=[inp.height, inp.width],
               transform=[float(v) for v in inp.transform[:6]])  # fmt: skip
    _processing(item, manifest)
    _add_assets(item, out_dir, manifest)
    return item


def _to_datetime(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def _epsg(crs_text: str | None) -> int | None:
    if not crs_text:
        return None
    from rasterio.crs import CRS

    epsg: int | None = CRS.from_user_input(crs_text).to_epsg()
    return epsg


def _wkt2(crs_text: str) -> str:
    from pyproj import CRS

    return CRS.from_user_input(crs_text).to_wkt()


def _processing(item: Any, manifest: Manifest) -> None:
    """The processing extension: lineage, software versions, the model and its fingerprint, the run's time."""
    versions = {k: v for k, v in manifest.versions.items() if v}
    model = manifest.model
    software = {"samgeo-pipeline": versions.get("samgeo-pipeline") or "unknown"}
    software.update({k: v for k, v in versions.items() if k in ("torch", "transformers", "rasterio", "gdal")})
    if model.id and model.id != "none":
        software[f"model {model.id}"] = model.fingerprint or "unknown"
    item.stac_extensions.append(PROCESSING_SCHEMA)
    item.properties.update({
        "processing:lineage": (
            f"samgeo-pipeline segment: coarse water mask ({_coarse_method(manifest)}) "
            + (f"prompting SAM {model.id} (weights {model.fingerprint})" if model.id not in (None, "none")
               else "only, no SAM (--model none)")
            + f"; parameters hash {manifest.params_hash}"
        ),
        "processing:software": software,
        "processing:datetime": _iso(created) if (created := parse_datetime(manifest.created)) else None,
    })  # fmt: skip


def _coarse_method(manifest: Manifest) -> str:
    coarse = manifest.radiometry.get("coarse") or {}
    return coarse.get("method") or "unknown method"


def _add_assets(item: Any, out_dir: Path, manifest: Manifest) -> None:
    import pystac
    from pystac.extensions.classification import Classification, ClassificationExtension
    from pystac.extensions.file import FileExtension
    from pystac.extensions.raster import DataType, RasterBand, RasterExtension, Sampling

    files = [
        ("mask", "mask.tif", COG_MEDIA_TYPE, ["data"], "Water mask: 0 not water, 1 water, 255 nodata"),
        ("probability", "probability.tif", COG_MEDIA_TYPE, ["data"], "SAM water probability"),
        ("polygons", "water.gpkg", "application/geopackage+sqlite3", ["data"], "Water polygons (layer water)"),
        ("quicklook", "quicklook.png", pystac.MediaType.PNG, ["thumbnail", "overview"], "Quicklook"),
    ]
    for key, name, media, roles, title in files:
        path = out_dir / name
        if not path.is_file() or name not in manifest.outputs:
            continue
        asset = pystac.Asset(f"./{name}", title=title, media_type=media, roles=roles)
        item.add_asset(key, asset)
        FileExtension.ext(asset, add_if_missing=True).apply(size=path.stat().st_size, checksum=multihash_sha256(path))
    if "mask" in item.assets:
        mask = item.assets["mask"]
        RasterExtension.ext(mask, add_if_missing=True).apply([RasterBand.create(
            data_type=DataType.UINT8, nodata=255, sampling=Sampling.AREA, spatial_resolution=_resolution(manifest))])
        ClassificationExtension.ext(mask, add_if_missing=True).apply(classes=[
            Classification.create(value, name=name, title=title, nodata=True if value == 255 else None)
            for value, name, title, _ in MASK_CLASSES])  # fmt: skip
    if "probability" in item.assets:
        RasterExtension.ext(item.assets["probability"], add_if_missing=True).apply(
            [RasterBand.create(data_type=DataType.FLOAT32, sampling=Sampling.AREA)])
    item.add_asset("manifest", pystac.Asset("./manifest.json", title="How this output was made (samgeo-pipeline)",
                                            media_type=pystac.MediaType.JSON, roles=["metadata"]))


def _resolution(manifest: Manifest) -> float | None:
    """The mask's pixel size in CRS units (None without a CRS)."""
    if not manifest.input.crs:
        return None
    t = manifest.input.transform
    return float((abs(t[0]) + abs(t[4])) / 2)


def write_item(out_dir: Path, manifest: Manifest) -> Path:
    """Build and write ``item.json`` atomically (before the manifest, which stays last)."""
    item = build_item(out_dir, manifest)
    path = out_dir / ITEM_NAME
    write_text_atomic(path, json.dumps(item.to_dict(include_self_link=False, transform_hrefs=False), indent=2))
    return path


# --------------------------------------------------------------------------- catalog


# --------------------------------------------------------------------------- validation


def validate_offline(data: dict[str, Any]) -> None:
    """Validate an Item or Catalog dict without the network.

    The core STAC 1.1 JSON schemas that pystac ships (Item, Catalog, GeoJSON) are checked with
    jsonschema; extension schemas are not downloaded: the extensions are read back through pystac's
    models instead (projection, raster, classification, file), which check their fields' types.

    Raises:
        jsonschema.ValidationError, pystac.STACError, ValueError: the object is not valid.
    """
    import jsonschema
    import pystac
    from pystac.validation.local_validator import get_local_schema_cache
    from referencing import Registry, Resource

    cache = get_local_schema_cache()
    kind = "item" if data.get("type") == "Feature" else "catalog" if data.get("type") == "Catalog" else "collection"
    uri = next(u for u in cache if u.endswith(f"/{kind}-spec/json-schema/{kind}.json"))
    registry = Registry().with_resources([(k, Resource.from_contents(v)) for k, v in cache.items()])
    jsonschema.Draft7Validator(cache[uri], registry=registry).validate(data)
    if kind == "item":
        _check_item_extensions(pystac.Item.from_dict(data, preserve_dict=True))


def _check_item_extensions(item: Any) -> None:
    from pystac.extensions.classification import ClassificationExtension
    from pystac.extensions.file import FileExtension
    from pystac.extensions.projection import ProjectionExtension
    from pystac.extensions.raster import RasterExtension

    proj = ProjectionExtension.ext(item)
    if not (isinstance(proj.shape, list) and len(proj.shape) == 2 and isinstance(proj.transform, list)
            and len(proj.transform) in (6, 9) and (proj.code or proj.wkt2 or item.geometry is None)):  # fmt: skip
        raise ValueError(f"{item.id}: incomplete projection extension")
    for key, asset in item.assets.items():
        if FileExtension.has_extension(item) and key != "manifest":
            file = FileExtension.ext(asset)
            if not (isinstance(file.size, int) and re.fullmatch(r"1220[0-9a-f]{64}", file.checksum or "")):
                raise ValueError(f"{item.id}: asset {key} lacks file:size or a SHA-256 file:checksum")
        if key == "mask":
            bands = RasterExtension.ext(asset).bands or []
            classes = ClassificationExtension.ext(asset).classes or []
            if [b.nodata for b in bands] != [255] or sorted(c.value for c in classes) != [0, 1, 255]:
                raise ValueError(f"{item.id}: mask asset without its raster band or classes")
    software = item.properties.get("processing:software")
    if PROCESSING_SCHEMA not in item.stac_extensions or not isinstance(software, dict) or "samgeo-pipeline" not in software:
        raise ValueError(f"{item.id}: no processing extension naming the software")
