"""Band mapping: which 1-based band of the input is red, green, blue, NIR, SWIR (SWIR1), SWIR2.

Presets live in :data:`BAND_PRESETS`; a user may also pass ``"red=1,green=2,blue=3,nir=4"``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

from samgeo_pipeline.errors import ConfigError, InputError

BandName = Literal["red", "green", "blue", "nir", "swir", "swir2"]
BAND_NAMES: tuple[str, ...] = get_args(BandName)

#: Band presets by sensor. Values are 1-based band indexes of the file.
BAND_PRESETS: dict[str, dict[str, int]] = {
    "rgb": {"red": 1, "green": 2, "blue": 3},
    # NAIP: R, G, B, NIR.
    "naip": {"red": 1, "green": 2, "blue": 3, "nir": 4},
    # Sentinel-2 L1C, 13 bands B1 B2 B3 B4 B5 B6 B7 B8 B8A B9 B10 B11 B12; SWIR = B11, SWIR2 = B12.
    "sentinel2": {"blue": 2, "green": 3, "red": 4, "nir": 8, "swir": 12, "swir2": 13},
    # Landsat 8/9 OLI band order (B1 coastal ... B7); SWIR = B6 (SWIR1), SWIR2 = B7.
    "landsat8": {"blue": 2, "green": 3, "red": 4, "nir": 5, "swir": 6, "swir2": 7},
}

#: Preset chosen from the band count when the user gives none.
_PRESET_BY_COUNT = {3: "rgb", 4: "naip", 13: "sentinel2"}

#: Band descriptions (lower case, letters and digits only) -> the band they name. ``None``: a
#: known band that is none of :data:`BAND_NAMES` (mapping red to it contradicts the file).
_DESCRIPTION_NAMES: dict[str, str | None] = {
    "red": "red", "r": "red", "green": "green", "g": "green", "blue": "blue", "b": "blue",
    "nir": "nir", "nearinfrared": "nir", "nir1": "nir", "nir08": "nir", "nearir": "nir",
    "swir": "swir", "swir1": "swir", "swir16": "swir", "shortwaveinfrared1": "swir",
    "shortwaveinfrared": "swir",
    "swir2": "swir2", "swir22": "swir2", "shortwaveinfrared2": "swir2", "coastal": None, "coastalaerosol": None,
    "cirrus": None, "thermal": None, "tir": None, "tirs1": None, "tirs2": None, "pan": None,
    "panchromatic": None, "alpha": None, "watervapour": None, "watervapor": None,
    "rededge": None, "rededge1": None, "rededge2": None, "rededge3": None,
}

#: How a :class:`BandMap` came about: given by the user, read from the band descriptions,
#: guessed from the band count (see :func:`parse_bands`), or read from a STAC Item's ``eo:bands``
#: (:mod:`samgeo_pipeline.io.stac_input`).
BandSource = Literal["given", "descriptions", "guessed", "stac"]


@dataclass(frozen=True)
class BandMap:
    """1-based band indexes of the input for each named band (``None`` when absent)."""

    red: int | None = None
    green: int | None = None
    blue: int | None = None
    nir: int | None = None
    swir: int | None = None
    swir2: int | None = None
    source: BandSource = field(default="given", compare=False)

    def as_dict(self) -> dict[str, int]:
        """Mapped bands only, e.g. ``{"red": 1, "green": 2, "nir": 4}``."""
        return {name: getattr(self, name) for name in BAND_NAMES if getattr(self, name) is not None}

    def __str__(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.as_dict().items())

    def check(self, band_count: int, path: object) -> None:
        """Raise :class:`InputError` when a mapped band does not exist in a file of ``band_count`` bands."""
        for name, index in self.as_dict().items():
            if not 1 <= index <= band_count:
                raise InputError(
                    f"{path}: band {name}={index} does not exist (the file has {band_count} band(s)); "
                    "pass --bands, e.g. --bands red=1,green=2,blue=3,nir=4"
                )


def guessed_bands_message(path: object, band_map: BandMap, how: str) -> str:
    """The warning of a band mapping nobody gave (``how``: e.g. ``guessed from 4 bands``): a wrong
    guess makes wrong water with no error, so it says how to pin the mapping."""
    return (f"{path}: band order {band_map} {how} (no --bands, no watch rule, no band descriptions naming "
            "the bands); if it is wrong the water is wrong: pin it with --bands or a watch rule's bands option")


def described_band(description: str | None) -> str | None | bool:
    """The band a description names: a :data:`BAND_NAMES` entry, ``None`` for another known band
    (``"SWIR2"``, ``"coastal"``), ``False`` when it names nothing known (``"Band 1"``, empty)."""
    key = re.sub(r"[^a-z0-9]", "", (description or "").lower())
    return _DESCRIPTION_NAMES.get(key, False)


def bands_from_descriptions(descriptions: Sequence[str | None]) -> BandMap | None:
    """The mapping the file's band descriptions spell out, when they name red and green (each once).

    ``("SWIR1", "NIR", "Red", "Green")`` -> ``swir=1,nir=2,red=3,green=4`` (source
    ``descriptions``); ``None`` when red or green is not named, or a band is named twice.
    """
    found: dict[str, int] = {}
    for index, description in enumerate(descriptions, start=1):
        name = described_band(description)
        if isinstance(name, str):
            if name in found:
                return None
            found[name] = index
    if not {"red", "green"} <= set(found):
        return None
    return BandMap(**found, source="descriptions")


def check_descriptions(band_map: BandMap, descriptions: Sequence[str | None], path: object) -> None:
    """Raise :class:`InputError` when a mapped band's own description names another band.

    Bands without a known description (``"Band 1"``, none) are not checked.
    """
    for name, index in band_map.as_dict().items():
        if index > len(descriptions):
            continue
        described = described_band(descriptions[index - 1])
        if described is not False and described != name:
            raise InputError(
                f"{path}: the {band_map.source} band mapping {band_map} reads band {index} as {name}, but "
                f"the file describes it as {descriptions[index - 1]!r}; pass bands explicitly "
                "(--bands or a watch rule), e.g. --bands swir=1,nir=2,red=3,green=4"
            )


def parse_bands(
    spec: str | dict[str, int] | None,
    band_count: int | None = None,
    descriptions: Sequence[str | None] | None = None,
    path: object | None = None,
) -> BandMap:
    """Build a :class:`BandMap` from a preset name, a ``"name=index,..."`` string or a dict.

    Args:
        spec: preset name (see :data:`BAND_PRESETS`), ``"red=1,green=2,nir=4"``, a dict, or
            ``None``/``"auto"``: read the mapping from ``descriptions`` when they name the bands
            (source ``descriptions``), else guess a preset from ``band_count`` (3: rgb, 4: naip,
            13: sentinel2; source ``guessed``).
        band_count: number of bands of the file, used only for ``"auto"``.
        descriptions: the file's band descriptions (rasterio's ``descriptions``), used only for
            ``"auto"``: a guess they contradict is refused.

    Raises:
        ConfigError: unknown preset or band name, bad syntax.
        InputError: ``"auto"`` with a band count that no preset fits, or a guess that contradicts
            the band descriptions (the message names ``path``).
    """
    if spec is None or spec == "auto":
        return _auto_bands(band_count, descriptions or (), path)
    if isinstance(spec, dict):
        mapping = {str(k): int(v) for k, v in spec.items()}
    elif spec in BAND_PRESETS:
        mapping = BAND_PRESETS[spec]
    else:
        mapping = {}
        for part in str(spec).split(","):
            name, sep, value = part.partition("=")
            if not sep or not value.strip().isdigit():
                raise ConfigError(
                    f"--bands {spec!r}: expected a preset ({', '.join(BAND_PRESETS)}) or "
                    "name=index pairs such as red=1,green=2,blue=3,nir=4"
                )
            mapping[name.strip().lower()] = int(value)
    unknown = sorted(set(mapping) - set(BAND_NAMES))
    if unknown:
        raise ConfigError(f"--bands: unknown band name(s) {unknown}; known: {', '.join(BAND_NAMES)}")
    return BandMap(**mapping, source="given")


def _auto_bands(band_count: int | None, descriptions: Sequence[str | None], path: object | None) -> BandMap:
    described = bands_from_descriptions(descriptions)
    if described is not None:
        return described
    preset = _PRESET_BY_COUNT.get(band_count or 0)
    if preset is None:
        prefix = f"{path}: " if path else ""
        raise InputError(
            f"{prefix}cannot guess the band order of a {band_count}-band file; pass --bands with a preset "
            f"({', '.join(BAND_PRESETS)}) or a mapping such as red=3,green=2,blue=1,nir=4"
        )
    guess = BandMap(**BAND_PRESETS[preset], source="guessed")
    check_descriptions(guess, descriptions, path or f"a {band_count}-band file")
    return guess
