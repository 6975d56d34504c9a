"""The one typed configuration of the segment pipeline, layered: defaults < YAML file < CLI flags.

Every default lives here, once. :class:`SegmentConfig` is frozen; derive variants with
:func:`dataclasses.replace` or :meth:`SegmentConfig.merged`. The options fine-tuning shares with
segmentation are declared once, in :class:`ImageOptions`, which both configs extend.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

import yaml

from samgeo_pipeline.errors import ConfigError

IndexName = Literal["auto", "ndwi", "mndwi", "rgb"]
PromptKind = Literal["points", "box"]
PointMerge = Literal["joint", "mean", "best"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
OnUncertain = Literal["skip", "write"]

DEFAULT_MODEL = "facebook/sam-vit-base"
#: Largest ``tile_size``: a tile is held as float32 per band, several at once (prefetch + batch).
MAX_TILE_SIZE = 8192

#: Options that change how fast a run goes but not what it writes; left out of the parameter hash.
_RUNTIME_ONLY = frozenset(
    {"overwrite", "batch_size", "prefetch", "read_workers", "progress", "max_pixels", "max_tiles", "attention_rows"}
)


@dataclass(frozen=True)
class ImageOptions:
    """The options segmentation and fine-tuning share: how an image becomes SAM's input and prompts.

    :class:`SegmentConfig` and :class:`~samgeo_pipeline.finetune.config.FinetuneConfig` both
    extend it, so every shared option is declared (and validated) once, with the same name, meaning
    and default. Sizes in pixels are in the *working grid*: the input grid, or the ``gsd`` grid when set.
    """

    # --- input ---
    bands: str = "auto"
    """Band preset (rgb, naip, sentinel2, landsat8), ``name=index,...``, or auto (by band count)."""
    nodata: float | None = None
    """Nodata value overriding the file's (``None``: use the file's nodata / mask)."""
    # --- tiling ---
    tile_size: int = 1024
    """Side of a tile as read, halo included, in working pixels (SAM sees it resized to 1024)."""
    halo: int = 128
    """Context read around each tile's core; only the core is written."""
    gsd: float | None = None
    """Target ground sample distance in CRS units per pixel (``None``: native resolution)."""
    # --- radiometry and coarse mask ---
    percentiles: tuple[float, float] = (2.0, 98.0)
    """Per-band percentiles (whole image, nodata excluded) mapped to 0 and 255 for SAM."""
    composite: str = "auto"
    """Bands shown to SAM as R,G,B (e.g. nir,swir,green); auto: true colour, else a false colour."""
    stats_size: int = 2048
    """Longest side of the decimated read used for whole-image statistics."""
    index: IndexName = "auto"
    """Coarse-mask method: auto = mndwi when SWIR is mapped, else ndwi when NIR is, else rgb (dark and smooth)."""
    threshold: float | None = None
    """Fixed index threshold (water where index > threshold); ``None``: -0.1 for MNDWI, 0.0 for NDWI."""
    texture_window: int = 13
    """RGB method: side in working pixels of the window where water must be smooth."""
    min_area: int = 64
    """Connected water components smaller than this many pixels are dropped (keep <= halo)."""
    # --- prompts ---
    prompt: PromptKind = "points"
    """Prompt kind per component: dynamic-distance points or a bounding box."""
    points: int = 3
    """Positive points per component."""
    negatives: int = 0
    """Negative points per component, from the eroded background."""
    erosion: int | None = None
    """3x3 erosions before sampling; ``None``: the seed's int(count**0.6 / 35)."""
    box_jitter: int = 0
    """Each box coordinate moves by a random integer in [-box_jitter, box_jitter] pixels."""
    max_components: int = 8
    """Prompts per tile: the largest K connected components of the coarse mask."""
    point_merge: PointMerge = "joint"
    """joint: a component's points are one prompt; mean/best: one prompt per point, merged."""
    seed: int = 0
    """Seed of the prompt sampling (fine-tuning: also of shuffling and the validation split); results
    are deterministic for a given seed."""
    # --- model ---
    model: str = DEFAULT_MODEL
    """Hub id, local ``save_pretrained`` directory, fine-tuned checkpoint, or ``none``."""
    device: str = "auto"
    """auto (cuda, mps, cpu), or a torch device string."""
    precision: Precision = "auto"
    """auto: bf16 autocast on CUDA when supported (else fp16), fp32 elsewhere."""
    progress: bool = True
    """Show progress bars."""

    def __post_init__(self) -> None:
        if self.tile_size < 32:
            raise ConfigError(f"tile_size={self.tile_size}: must be at least 32 pixels")
        if self.tile_size > MAX_TILE_SIZE:
            raise ConfigError(
                f"tile_size={self.tile_size}: must be at most {MAX_TILE_SIZE} pixels (SAM sees 1024; use --gsd for context)"
            )
        if not (len(self.percentiles) == 2 and 0 <= self.percentiles[0] < self.percentiles[1] <= 100):
            raise ConfigError(
                f"percentiles={','.join(map(str, self.percentiles))}: give two values low,high with 0 <= low < high <= 100"
            )
        if not 0 <= self.halo < self.tile_size // 2:
            raise ConfigError(f"halo={self.halo}: must be >= 0 and below half the tile_size ({self.tile_size})")
        if self.gsd is not None and self.gsd <= 0:
            raise ConfigError(f"gsd={self.gsd}: must be a positive number of CRS units per pixel")
        if self.points < 0 or self.negatives < 0 or self.max_components < 1:
            raise ConfigError("points and negatives must be >= 0 and max_components >= 1")
        if self.prompt == "points" and self.points < 1:
            raise ConfigError("prompt=points needs points >= 1")
        for name in ("index", "prompt", "point_merge", "precision"):
            allowed = _literal_values(name)
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name}={getattr(self, name)!r}: choose one of {', '.join(allowed)}")
        if self.texture_window < 3 or self.texture_window % 2 == 0:
            raise ConfigError(f"texture_window={self.texture_window}: must be an odd number of pixels >= 3")
        if self.composite != "auto":
            parse_composite(self.composite)


@dataclass(frozen=True)
class SegmentConfig(ImageOptions):
    """Every option of ``samgeo-pipeline segment``: the shared :class:`ImageOptions` and these."""

    max_pixels: float = 2.5e9
    """Refuse an input whose grid (source, or working with --gsd) has more pixels than this (50k x 50k passes)."""
    max_tiles: int = 1_000_000
    """Refuse an input that needs more tiles than this."""
    restrict_dilation: int = 0
    """If > 0, SAM's mask is limited to the coarse mask dilated by this many pixels."""
    batch_size: int = 4
    """Tiles per encoder batch."""
    attention_rows: int = 0
    """If > 0, the encoder's global attention runs this many token rows at a time instead of one dense
    (batch, heads, 4096, 4096) score tensor: the same embeddings, ~4x less peak memory at 8
    (benchmarks/bench_encoder_memory.py); 0: dense."""
    prefetch: int = 8
    """Tiles read ahead of the model by the reader threads."""
    read_workers: int = 0
    """Threads reading and preparing tiles, and reading the statistics (0: one per CPU the process may
    use, at most 32). ``prefetch`` is raised to at least this."""
    # --- outputs ---
    probability: bool = False
    """Also write ``probability.tif`` (float32 0-1, SAM's sigmoid; the coarse mask for --model none)."""
    simplify: float = 0.0
    """Polygon simplification tolerance in CRS units (0: none)."""
    overwrite: bool = False
    """Process inputs whose outputs already exist with the same parameters."""
    on_uncertain: OnUncertain = "skip"
    """When the coarse rule cannot tell water from land on an image: skip (no SAM, no mask: manifest and
    quicklook only) or write (run as usual); either way the image's status is uncertain (exit code 3)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.max_pixels > 0 or self.max_tiles < 1:
            raise ConfigError(f"max_pixels={self.max_pixels}, max_tiles={self.max_tiles}: must be > 0 and >= 1")
        if self.batch_size < 1 or self.prefetch < 1 or self.read_workers < 0 or self.attention_rows < 0:
            raise ConfigError("batch_size and prefetch must be >= 1, read_workers and attention_rows >= 0")
        if self.on_uncertain not in _literal_values("on_uncertain"):
            raise ConfigError(f"on_uncertain={self.on_uncertain!r}: choose one of skip, write")

    @property
    def core_size(self) -> int:
        """Side of a tile's core (the part written), in working pixels."""
        return self.tile_size - 2 * self.halo

    @property
    def uses_sam(self) -> bool:
        """False for ``--model none`` (the coarse mask alone)."""
        return self.model.lower() != "none"

    def merged(self, values: dict[str, Any]) -> SegmentConfig:
        """A copy with ``values`` applied (``None`` values are ignored); unknown keys raise."""
        known = {f.name: f for f in fields(self)}
        changes: dict[str, Any] = {}
        for key, value in values.items():
            key = key.replace("-", "_")
            if key not in known:
                raise ConfigError(f"unknown option {key!r}; known: {', '.join(sorted(known))}")
            if value is None:
                continue
            changes[key] = _coerce(key, value, getattr(self, key))
        return dataclasses.replace(self, **changes)

    def with_checkpoint(self, preprocessing: dict[str, Any]) -> SegmentConfig:
        """The config a fine-tuned checkpoint's preprocessing implies (its ``samgeo_checkpoint.json``).

        The checkpoint's composite and band mapping fill options left at ``auto``; its percentiles
        replace this config's, so SAM sees inputs normalised as in training. An explicit composite
        or band mapping that differs from the checkpoint's wins, with a warning.

        Args:
            preprocessing: the checkpoint's ``preprocessing`` section: ``composite`` (3 band names),
                ``percentiles`` (2 floats) and optionally ``bands`` (a band mapping string).
        """
        import warnings

        from samgeo_pipeline.errors import SamgeoPipelineWarning

        changes: dict[str, Any] = {}
        for key in ("composite", "bands"):
            value = preprocessing.get(key)
            if value is None:
                continue
            value = ",".join(value) if isinstance(value, (list, tuple)) else str(value)
            current = getattr(self, key)
            if current == "auto":
                changes[key] = value
            elif current != value:
                warnings.warn(
                    f"--{key} {current} differs from the fine-tuned model's {value}; using {current}",
                    SamgeoPipelineWarning,
                    stacklevel=2,
                )
        if preprocessing.get("percentiles") is not None:
            changes["percentiles"] = tuple(float(v) for v in preprocessing["percentiles"])
        return self.merged(changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of every option."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def params_hash(self) -> str:
        """Hash of the options that change the outputs (runtime-only options excluded)."""
        params = {k: v for k, v in self.to_dict().items() if k not in _RUNTIME_ONLY}
        return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def parse_composite(spec: str | list[str] | tuple[str, ...]) -> tuple[str, str, str]:
    """``"nir,swir,green"`` (or a sequence) -> three band names shown to SAM as R, G, B.

    Raises:
        ConfigError: not three known band names.
    """
    from samgeo_pipeline.bands import BAND_NAMES

    names = [n.strip().lower() for n in (spec.split(",") if isinstance(spec, str) else spec)]
    if len(names) != 3 or any(n not in BAND_NAMES for n in names):
        raise ConfigError(
            f"composite={spec!r}: give three band names out of {', '.join(BAND_NAMES)}, e.g. nir,swir,green"
        )
    return names[0], names[1], names[2]


def _literal_values(name: str) -> tuple[str, ...]:
    from typing import get_args

    return {
        "index": get_args(IndexName),
        "prompt": get_args(PromptKind),
        "point_merge": get_args(PointMerge),
        "precision": get_args(Precision),
        "on_uncertain": get_args(OnUncertain),
    }[name]


def _coerce(key: str, value: Any, current: Any) -> Any:
    """Convert a YAML/CLI value to the type of the field's default."""
    try:
        if isinstance(current, tuple):
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(type(current[0])(v) for v in items)
        if isinstance(current, bool):
            if isinstance(value, str):
                return value.strip().lower() in {"1", "true", "yes", "on"}
            return bool(value)
        if key in {"nodata", "gsd", "threshold"}:
            return float(value)
        if key == "erosion":
            return int(value)
        if isinstance(current, (int, float)) and not isinstance(current, bool):
            return type(current)(value)
        return str(value) if not isinstance(value, (int, float)) or isinstance(current, str) else value
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"option {key}={value!r}: {exc}") from None


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into a dict of option values (keys as in :class:`SegmentConfig`)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must be a mapping of option: value")
    if isinstance(data.get("bands"), dict):
        data["bands"] = ",".join(f"{k}={v}" for k, v in data["bands"].items())
    if isinstance(data.get("composite"), list):
        data["composite"] = ",".join(str(v) for v in data["composite"])
    return data


def field_docs(cls: type) -> dict[str, str]:
    """Option name -> one-line help, from the attribute docstrings of a config dataclass and its bases
    (a subclass's text wins), for the command lines."""
    import ast
    import inspect
    import textwrap

    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        body = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0].body  # type: ignore[attr-defined]
        for node, nxt in zip(body, body[1:]):
            if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
                docs[node.target.id] = " ".join(str(nxt.value.value).split())  # type: ignore[union-attr]
    return docs


def config_field_docs() -> dict[str, str]:
    """:func:`field_docs` of :class:`SegmentConfig` (the ``segment`` flags)."""
    return field_docs(SegmentConfig)


__all__ = ["ImageOptions", "SegmentConfig", "DEFAULT_MODEL", "load_config_file", "config_field_docs", "field_docs",
           "parse_composite"]
