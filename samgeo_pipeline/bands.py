"""Band mapping: which 1-based band of the input is red, green, blue, NIR, SWIR.

Presets live in :data:`BAND_PRESETS`; a user may also pass ``"red=1,green=2,blue=3,nir=4"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from samgeo_pipeline.errors import ConfigError, InputError

BandName = Literal["red", "green", "blue", "nir", "swir"]
BAND_NAMES: tuple[str, ...] = get_args(BandName)

#: Band presets by sensor. Values are 1-based band indexes of the file.
BAND_PRESETS: dict[str, dict[str, int]] = {
    "rgb": {"red": 1, "green": 2, "blue": 3},
    # NAIP: R, G, B, NIR.
    "naip": {"red": 1, "green": 2, "blue": 3, "nir": 4},
    # Sentinel-2 L1C, 13 bands B1 B2 B3 B4 B5 B6 B7 B8 B8A B9 B10 B11 B12; SWIR = B11.
    "sentinel2": {"blue": 2, "green": 3, "red": 4, "nir": 8, "swir": 12},
    # Landsat 8/9 OLI band order (B1 coastal ... B7); SWIR = B6 (SWIR1).
    "landsat8": {"blue": 2, "green": 3, "red": 4, "nir": 5, "swir": 6},
}

#: Preset chosen from the band count when the user gives none.
_PRESET_BY_COUNT = {3: "rgb", 4: "naip", 13: "sentinel2"}


@dataclass(frozen=True)
class BandMap:
    """1-based band indexes of the input for each named band (``None`` when absent)."""

    red: int | None = None
    green: int | None = None
    blue: int | None = None
    nir: int | None = None
    swir: int | None = None

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


def parse_bands(spec: str | dict[str, int] | None, band_count: int | None = None) -> BandMap:
    """Build a :class:`BandMap` from a preset name, a ``"name=index,..."`` string or a dict.

    Args:
        spec: preset name (see :data:`BAND_PRESETS`), ``"red=1,green=2,nir=4"``, a dict, or
            ``None``/``"auto"`` to pick a preset from ``band_count`` (3: rgb, 4: naip,
            13: sentinel2).
        band_count: number of bands of the file, used only for ``"auto"``.

    Raises:
        ConfigError: unknown preset or band name, bad syntax.
        InputError: ``"auto"`` with a band count that no preset fits.
    """
    if spec is None or spec == "auto":
        preset = _PRESET_BY_COUNT.get(band_count or 0)
        if preset is None:
            raise InputError(
                f"cannot guess the band order of a {band_count}-band file; pass --bands with a preset "
                f"({', '.join(BAND_PRESETS)}) or a mapping such as red=3,green=2,blue=1,nir=4"
            )
        return BandMap(**BAND_PRESETS[preset])
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
    return BandMap(**mapping)
