"""A STAC Item as input: its assets' bands as one virtual raster (VRT), mapped by ``eo:bands``.

The Item says which asset holds which band (``eo:bands`` common names, or STAC 1.1 ``bands`` with
``eo:common_name``), so nothing is guessed: ``blue``, ``green``, ``red``, ``nir`` (``nir08`` when
there is no ``nir``), ``swir16`` and ``swir22`` become the pipeline's blue, green, red, nir, swir and
swir2. The needed assets are read through one VRT written to a temporary folder: every band on the
grid of the finest asset (coarser ones resampled by nearest neighbour; ``--gsd`` then resamples
the working grid as for any input), each band described by its name (so the VRT reads like any
described file). The VRT also carries, in its metadata domain :data:`STAC_DOMAIN`, the Item's
href, its datetime and the reflectance map of the raster extension (``raster:bands`` ``scale`` /
``offset``, or STAC 1.1 ``raster:scale`` / ``raster:offset``), which
:func:`samgeo_pipeline.io.reflectance.resolve_reflectance` reads as the source ``STAC raster:bands``.

Asset hrefs may be local paths (relative to the Item) or http(s) URLs (read through GDAL's
``/vsicurl/``). All needed assets must share one CRS and be north-up.
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import rasterio
from rasterio.errors import RasterioError

from samgeo_pipeline.errors import InputError
from samgeo_pipeline.io.bands import BAND_NAMES, BandMap

#: The VRT's metadata domain with what the Item said (item href, datetime, reflectance scale/offset).
STAC_DOMAIN = "SAMGEO_STAC"
#: The reflectance map's source name in manifests.
REFLECTANCE_SOURCE = "STAC raster:bands"
#: ``eo:bands`` common names -> the pipeline's band names, in order of preference per band.
COMMON_NAMES: dict[str, tuple[str, ...]] = {
    "blue": ("blue",),
    "green": ("green",),
    "red": ("red",),
    "nir": ("nir", "nir08"),
    "swir": ("swir16",),
    "swir2": ("swir22",),
}
_GDAL_TYPES = {"uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32",
               "int32": "Int32", "float32": "Float32", "float64": "Float64"}  # fmt: skip


def is_stac_item(path: str | Path) -> bool:
    """True when ``path`` is a ``.json`` file holding a STAC Item (``type: Feature`` with ``stac_version``)."""
    path = Path(path)
    if path.suffix.lower() != ".json" or not path.is_file():
        return False
    try:
        data = json.loads(path.read_bytes()[:50_000_000])
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("type") == "Feature" and "stac_version" in data


@dataclass(frozen=True)
class BandSource:
    """Where one mapped band comes from: the asset key, its href (as GDAL opens it) and 1-based band."""

    asset: str
    href: str
    band: int
    scale: float | None = None
    offset: float | None = None
    nodata: float | None = None


@dataclass
class StacInput:
    """A STAC Item opened as input: the VRT to read and what the manifest says about it."""

    item: str
    vrt: Path
    bands: BandMap
    sources: dict[str, BandSource] = field(default_factory=dict)
    datetime: str | None = None
    checksum: str = ""

    def manifest_entry(self) -> dict[str, Any]:
        """The manifest's ``input.stac``: the Item and the asset (and band) each mapped band came from."""
        return {
            "item": self.item,
            "datetime": self.datetime,
            "assets": {name: {"asset": s.asset, "href": s.href, "band": s.band} for name, s in self.sources.items()},
        }


def open_stac_item(item_path: str | Path, folder: Path) -> StacInput:
    """Map the Item's bands and write its VRT into ``folder`` (the caller's temporary folder).

    Raises:
        InputError: not a readable STAC Item, no asset with a known common name, an asset that
            cannot be opened, assets on different CRSs or rotated grids.
    """
    import pystac

    item_path = str(item_path)
    try:
        raw = Path(item_path).read_bytes()
        item = pystac.Item.from_dict(json.loads(raw), href=str(Path(item_path).resolve()), migrate=True)
    except (OSError, ValueError, KeyError, TypeError, pystac.STACError) as exc:
        raise InputError(f"{item_path}: not a readable STAC Item ({type(exc).__name__}: {exc})") from None
    sources = _band_sources(item, item_path)
    grids = {name: _grid(s.href, item_path, name) for name, s in sources.items()}
    vrt_text = _vrt_xml(item_path, item, sources, grids)
    folder.mkdir(parents=True, exist_ok=True)
    vrt = folder / f"{_slug(item.id)}.vrt"
    vrt.write_text(vrt_text)
    checksum = hashlib.sha256(raw + vrt_text.encode()).hexdigest()
    mapping = {name: i for i, name in enumerate(sources, start=1)}
    return StacInput(item_path, vrt, BandMap(**mapping, source="stac"), sources, _datetime(item), checksum)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:100].strip(".") or "item"


def _datetime(item: Any) -> str | None:
    value = item.datetime or item.common_metadata.start_datetime
    return value.isoformat() if value is not None else None


def _asset_bands(asset: Any) -> list[dict[str, Any]]:
    """The band objects of an asset: STAC 1.0 ``eo:bands`` (with ``raster:bands`` merged in) or 1.1 ``bands``."""
    fields = asset.extra_fields
    if isinstance(fields.get("bands"), list):
        return [b if isinstance(b, dict) else {} for b in fields["bands"]]
    eo = fields.get("eo:bands") if isinstance(fields.get("eo:bands"), list) else []
    raster = fields.get("raster:bands") if isinstance(fields.get("raster:bands"), list) else []
    merged = []
    for i, band in enumerate(eo):
        extra = raster[i] if i < len(raster) and isinstance(raster[i], dict) else {}
        merged.append({**(band if isinstance(band, dict) else {}),
                       **{f"raster:{k}": v for k, v in extra.items()}})  # fmt: skip
    return merged


def _common_name(band: dict[str, Any]) -> str | None:
    name = band.get("eo:common_name", band.get("common_name"))
    return name.lower() if isinstance(name, str) else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _band_sources(item: Any, item_path: str) -> dict[str, BandSource]:
    """Pipeline band name -> its source, in :data:`BAND_NAMES` order (a GeoTIFF/COG asset first when
    two assets hold the same band, e.g. a COG and a JPEG 2000 copy)."""
    found: dict[str, BandSource] = {}
    assets = sorted(item.assets.items(), key=lambda kv: not _is_tiff(kv[1]))
    for pipeline_name in BAND_NAMES:
        for common in COMMON_NAMES[pipeline_name]:
            match = next(((key, asset, i, band) for key, asset in assets
                          for i, band in enumerate(_asset_bands(asset), start=1)
                          if _common_name(band) == common), None)  # fmt: skip
            if match is not None:
                key, asset, index, band = match
                found[pipeline_name] = BandSource(
                    key, _gdal_href(asset.get_absolute_href() or asset.href), index,
                    _number(band.get("raster:scale")), _number(band.get("raster:offset")),
                    _number(band.get("raster:nodata", band.get("nodata"))),
                )
                break
    if not found:
        raise InputError(
            f"{item_path}: no asset of this STAC Item has eo:bands common names "
            f"({', '.join(c for names in COMMON_NAMES.values() for c in names)}); segment its GeoTIFF "
            "with --bands instead"
        )
    return found


def _is_tiff(asset: Any) -> bool:
    media = (asset.media_type or "").lower()
    return "tiff" in media or asset.href.lower().endswith((".tif", ".tiff"))


def _gdal_href(href: str) -> str:
    """The path GDAL opens for an asset href (``/vsicurl/`` for http(s), ``/vsis3/`` for s3, the path
    for ``file://``)."""
    if href.startswith(("http://", "https://")):
        return "/vsicurl/" + href
    if href.startswith("s3://"):
        return "/vsis3/" + href[len("s3://"):]
    return href[len("file://"):] if href.startswith("file://") else href


def is_item_url(spec: str) -> bool:
    """True for an http(s) URL whose path ends in ``.json`` (a STAC Item to fetch; the query is ignored)."""
    from urllib.parse import urlsplit

    return spec.startswith(("http://", "https://")) and urlsplit(spec).path.lower().endswith(".json")


def anchor_assets(path: Path, url: str) -> None:
    """Rewrite the relative asset hrefs of the Item copied to ``path`` from ``url`` as absolute URLs
    (resolved against ``url``), so the local copy reads the same assets; absolute hrefs are kept."""
    data = json.loads(path.read_text())
    for asset in (data.get("assets") or {}).values():
        href = asset.get("href") if isinstance(asset, dict) else None
        if isinstance(href, str) and "://" not in href and not href.startswith("/"):
            asset["href"] = _join_url(url, href)
    path.write_text(json.dumps(data))


def _join_url(base: str, href: str) -> str:
    """``href`` relative to ``base``'s folder, for any scheme (``urljoin`` leaves ``s3://`` alone)."""
    import posixpath
    from urllib.parse import urljoin, urlsplit, urlunsplit

    if base.startswith(("http://", "https://")):
        return urljoin(base, href)
    parts = urlsplit(base)
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(parts.path) or "/", href))
    return urlunsplit((parts.scheme, parts.netloc, joined, "", ""))


def fetch_item(url: str, folder: Path, timeout: float = 60.0) -> Path:
    """Download the STAC Item at ``url`` into a new sub-folder of ``folder`` (named as the URL's file),
    its relative asset hrefs made absolute (:func:`anchor_assets`).

    Raises:
        InputError: the URL cannot be read, or what it returns is not a STAC Item (the message shows
            the URL with its credentials hidden).
    """
    import urllib.error
    import urllib.request
    from urllib.parse import urlsplit

    from samgeo_pipeline.io.paths import safe_name
    from samgeo_pipeline.redact import redact

    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - http(s) only (is_item_url)
            raw = response.read(50_000_000)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise InputError(f"{redact(url)}: cannot read this STAC Item ({type(exc).__name__})") from None
    target = Path(tempfile.mkdtemp(dir=folder)) / safe_name(Path(urlsplit(url).path).name or "item.json")
    target.write_bytes(raw)
    if not is_stac_item(target):
        raise InputError(f"{redact(url)}: not a STAC Item (a JSON object with type Feature and stac_version)")
    anchor_assets(target, url)
    return target


@dataclass(frozen=True)
class _Grid:
    width: int
    height: int
    transform: Any
    crs: Any
    dtype: str
    nodata: float | None


def _grid(href: str, item_path: str, name: str) -> _Grid:
    try:
        with rasterio.open(href) as ds:
            return _Grid(ds.width, ds.height, ds.transform, ds.crs, ds.dtypes[0], ds.nodata)
    except RasterioError as exc:
        raise InputError(f"{item_path}: the {name} asset {href} cannot be opened ({exc})") from None


def _vrt_xml(item_path: str, item: Any, sources: dict[str, BandSource], grids: dict[str, _Grid]) -> str:
    """The VRT of the mapped bands on the finest asset's grid (see the module docstring)."""
    crss = {g.crs.to_wkt() if g.crs else None for g in grids.values()}
    if len(crss) != 1:
        raise InputError(f"{item_path}: the mapped assets are on different CRSs; reproject them to one first")
    if any(g.transform.b or g.transform.d for g in grids.values()):
        raise InputError(f"{item_path}: an asset's grid is rotated; only north-up assets can be combined")
    target = min(grids.values(), key=lambda g: abs(g.transform.a * g.transform.e))
    t = target.transform
    dtypes = {g.dtype for g in grids.values()}
    dtype = dtypes.pop() if len(dtypes) == 1 else "float32"
    metadata = {"ITEM": str(Path(item_path).resolve()), "DATETIME": _datetime(item) or ""}  # the checksum's part
    pairs = {(s.scale, s.offset) for s in sources.values()}
    if len(pairs) == 1 and (pair := pairs.pop())[0] is not None:
        metadata.update(REFLECTANCE_SCALE=repr(pair[0]), REFLECTANCE_OFFSET=repr(pair[1] or 0.0))
    lines = [f'<VRTDataset rasterXSize="{target.width}" rasterYSize="{target.height}">']
    if target.crs is not None:
        lines.append(f"  <SRS>{escape(target.crs.to_wkt())}</SRS>")
    lines.append(f"  <GeoTransform>{t.c!r}, {t.a!r}, {t.b!r}, {t.f!r}, {t.d!r}, {t.e!r}</GeoTransform>")
    lines.append(f'  <Metadata domain="{STAC_DOMAIN}">')
    lines += [f'    <MDI key="{k}">{escape(v)}</MDI>' for k, v in metadata.items()]
    lines.append("  </Metadata>")
    for index, (name, source) in enumerate(sources.items(), start=1):
        grid = grids[name]
        g = grid.transform
        nodata = source.nodata if source.nodata is not None else grid.nodata
        lines += [f'  <VRTRasterBand dataType="{_GDAL_TYPES.get(dtype, "Float32")}" band="{index}">',
                  f"    <Description>{name}</Description>"]  # fmt: skip
        if nodata is not None:
            lines.append(f"    <NoDataValue>{nodata!r}</NoDataValue>")
        dst = ((g.c - t.c) / t.a, (g.f - t.f) / t.e, grid.width * g.a / t.a, grid.height * g.e / t.e)
        lines += [
            '    <SimpleSource resampling="nearest">',
            f'      <SourceFilename relativeToVRT="0">{escape(source.href)}</SourceFilename>',
            f"      <SourceBand>{source.band}</SourceBand>",
            f'      <SrcRect xOff="0" yOff="0" xSize="{grid.width}" ySize="{grid.height}"/>',
            '      <DstRect xOff="{!r}" yOff="{!r}" xSize="{!r}" ySize="{!r}"/>'.format(*dst),
            "    </SimpleSource>",
            "  </VRTRasterBand>",
        ]
    lines.append("</VRTDataset>")
    return "\n".join(lines) + "\n"


def stac_metadata(ds: rasterio.DatasetReader) -> dict[str, str]:
    """What a VRT made by :func:`open_stac_item` says of its Item (empty for any other raster)."""
    try:
        return dict(ds.tags(ns=STAC_DOMAIN))
    except RasterioError:
        return {}


def check_no_bands(path: str | Path, bands: str) -> None:
    """Refuse ``--bands`` for a STAC Item: its ``eo:bands`` map them (one-line :class:`InputError`)."""
    if bands != "auto":
        raise InputError(f"{path}: a STAC Item's bands are mapped from its eo:bands common names; drop --bands {bands}")


def inspect_item(path: str | Path, bands: str, nodata: float | None) -> tuple[Any, str]:
    """``(RasterInfo of the Item's VRT, checksum)`` as a run computes them (the VRT is removed again).

    Raises:
        InputError: as :func:`open_stac_item`, or ``bands`` other than ``auto`` (the Item maps them).
    """
    from dataclasses import replace

    from samgeo_pipeline.io.raster import inspect_raster

    check_no_bands(path, bands)
    workspace = StacWorkspace()
    try:
        stac = open_stac_item(path, workspace.folder)
        info = inspect_raster(stac.vrt, stac.bands.as_dict(), nodata, warn=False)
        return replace(info, bands=stac.bands), stac.checksum
    finally:
        workspace.close()


class StacWorkspace:
    """The temporary folder of one run's VRT; removed by :meth:`close` (idempotent)."""

    def __init__(self) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = tempfile.TemporaryDirectory(prefix="samgeo-stac-")
        self.folder = Path(self._tmp.name)

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
