"""Rules of a watched folder: when a file is ready, how failures are retried, and which segment
options (band mapping, model, ...) each file gets from its name or its own metadata.

One YAML file holds them (the watch deployment reads ``$SAMGEO_DATA_DIR/watch.yaml``; an example
with every key is ``flows/watch_rules.example.yaml``). It is read at every scan, so editing it
needs no redeploy::

    ready: stable            # stable: unchanged for stable_seconds | rename | done-file
    stable_seconds: 180
    retries: 3               # attempts after the first failure, then the file is listed as failed
    retry_backoff_seconds: 60   # wait before retry n: backoff * 2**(n-1)
    defaults: {model: none}  # segment options of every file (a local model folder works offline)
    rules:                   # the first rule whose every condition matches adds its options
      - name: landsat
        match: {pattern: "landsat/*.tif", band_count: 4, dtype: uint16,
                descriptions: [SWIR1, NIR, Red, Green], tags: {SENSOR: OLI}}
        options: {bands: "swir=1,nir=2,red=3,green=4", gsd: 30}

When neither a rule nor the defaults set ``bands``, the mapping comes from the file's band
descriptions when they name the bands, else it is guessed from the band count (and that is said);
a guess the descriptions contradict is refused (:func:`samgeo_pipeline.io.bands.parse_bands`).
No Prefect here: :mod:`flows.watch` uses it.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from samgeo_pipeline.config import SegmentConfig
from samgeo_pipeline.errors import ConfigError, InputError
from samgeo_pipeline.io.bands import parse_bands

Ready = Literal["stable", "rename", "done-file"]
_READY = ("stable", "rename", "done-file")
_MATCH_KEYS = ("pattern", "band_count", "dtype", "descriptions", "tags")
#: Suffix of the marker file of ``ready: done-file`` (``scene.tif`` is ready once ``scene.tif.done`` exists).
DONE_SUFFIX = ".done"


@dataclass(frozen=True)
class FileMeta:
    """What the rules can match on, read from the file's header."""

    band_count: int
    dtype: str
    descriptions: tuple[str | None, ...]
    tags: dict[str, str]


@dataclass(frozen=True)
class Rule:
    """One rule: conditions (``None``: any) and the segment options it adds."""

    name: str
    options: dict[str, Any]
    pattern: str | None = None
    band_count: int | None = None
    dtype: str | None = None
    descriptions: tuple[str, ...] | None = None
    tags: dict[str, str] = field(default_factory=dict)

    def matches(self, rel_path: str, meta: FileMeta) -> bool:
        """True when every condition holds (``pattern``: shell pattern on the path relative to the
        watched folder, ``*`` crossing ``/``; descriptions compared case-insensitively)."""
        if self.pattern is not None and not fnmatch.fnmatch(rel_path, self.pattern):
            return False
        if self.band_count is not None and meta.band_count != self.band_count:
            return False
        if self.dtype is not None and meta.dtype != self.dtype:
            return False
        if self.descriptions is not None and [d.lower() for d in self.descriptions] != [
            (d or "").lower() for d in meta.descriptions
        ]:
            return False
        return all(meta.tags.get(k) == v for k, v in self.tags.items())


@dataclass(frozen=True)
class WatchRules:
    """The settings of a watched folder (see the module docstring)."""

    ready: Ready = "stable"
    stable_seconds: float = 180.0
    retries: int = 3
    retry_backoff_seconds: float = 60.0
    defaults: dict[str, Any] = field(default_factory=dict)
    rules: tuple[Rule, ...] = ()

    def retry_delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failure: ``backoff * 2**(failures-1)``."""
        factor: int = 2 ** max(failures - 1, 0)
        return self.retry_backoff_seconds * factor


def load_rules(path: str | Path | None) -> WatchRules:
    """Read the rules file; no path, or a file that does not exist: the defaults.

    Raises:
        ConfigError: unreadable YAML, an unknown key or a bad value (the message names the file).
    """
    if not path or not Path(path).is_file():
        return WatchRules()
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the watch rules ({exc}); fix the YAML") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the watch rules must be a mapping of keys (ready, defaults, rules, ...)")
    unknown = sorted(set(data) - {"ready", "stable_seconds", "retries", "retry_backoff_seconds", "defaults", "rules"})
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}; known: ready, stable_seconds, retries, "
                          "retry_backoff_seconds, defaults, rules")
    ready = data.get("ready", "stable")
    if ready not in _READY:
        raise ConfigError(f"{path}: ready must be one of {', '.join(_READY)}, not {ready!r}")
    defaults = _options(data.get("defaults") or {}, f"{path}: defaults")
    rules = tuple(_rule(r, i, path) for i, r in enumerate(data.get("rules") or []))
    try:
        return WatchRules(ready=ready, stable_seconds=float(data.get("stable_seconds", 180)),
                          retries=int(data.get("retries", 3)),
                          retry_backoff_seconds=float(data.get("retry_backoff_seconds", 60)),
                          defaults=defaults, rules=rules)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: {exc}; stable_seconds, retries and retry_backoff_seconds are numbers") from None


def _options(options: Any, where: str) -> dict[str, Any]:
    """Segment options, checked against :class:`SegmentConfig` (unknown names and bad values refused)."""
    if not isinstance(options, dict):
        raise ConfigError(f"{where}: options must be a mapping such as {{model: none}}")
    try:
        SegmentConfig().merged(dict(options))
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return dict(options)


def _rule(data: Any, index: int, path: str | Path) -> Rule:
    where = f"{path}: rule {index + 1}"
    if not isinstance(data, dict) or set(data) - {"name", "match", "options"}:
        raise ConfigError(f"{where}: a rule has the keys name, match and options")
    match = data.get("match") or {}
    if not isinstance(match, dict) or set(match) - set(_MATCH_KEYS):
        raise ConfigError(f"{where}: match takes {', '.join(_MATCH_KEYS)}")
    descriptions = match.get("descriptions")
    return Rule(
        name=str(data.get("name") or f"rule {index + 1}"),
        options=_options(data.get("options") or {}, where),
        pattern=match.get("pattern"),
        band_count=int(match["band_count"]) if "band_count" in match else None,
        dtype=match.get("dtype"),
        descriptions=tuple(str(d) for d in descriptions) if descriptions is not None else None,
        tags={str(k): str(v) for k, v in (match.get("tags") or {}).items()},
    )


def read_meta(source: Any) -> FileMeta:
    """Band count, data type, band descriptions and tags of a raster (a path or an open binary file).

    Raises:
        InputError: not a readable raster.
    """
    import rasterio
    from rasterio.errors import RasterioIOError

    try:
        with rasterio.open(source) as ds:
            return FileMeta(ds.count, ds.dtypes[0], tuple(ds.descriptions), {k: str(v) for k, v in ds.tags().items()})
    except RasterioIOError as exc:
        raise InputError(f"{getattr(source, 'name', source)}: not a readable raster ({exc}); replace the file") from None


def options_for(rules: WatchRules, rel_path: str, meta: FileMeta) -> tuple[dict[str, Any], str]:
    """The segment options of one file and how its band mapping was chosen.

    Returns:
        ``(options, bands_source)``: the defaults with the first matching rule's options on top and
        ``bands`` always set; ``bands_source`` is ``rule NAME``, ``defaults``, ``descriptions`` or
        ``guessed from N bands``.

    Raises:
        InputError: no mapping given and the guess contradicts the file's band descriptions, or
            no preset fits its band count.
    """
    options = dict(rules.defaults)
    source = "defaults"
    rule = next((r for r in rules.rules if r.matches(rel_path, meta)), None)
    if rule is not None:
        options.update(rule.options)
        source = f"rule {rule.name}" if "bands" in rule.options else source
    if options.get("bands", "auto") != "auto":
        return options, source
    band_map = parse_bands("auto", meta.band_count, meta.descriptions, path=rel_path)
    options["bands"] = str(band_map)
    return options, ("descriptions" if band_map.source == "descriptions" else f"guessed from {meta.band_count} bands")
