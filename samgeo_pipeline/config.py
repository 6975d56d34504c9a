"""The one typed configuration of the segment pipeline, layered: defaults < YAML file < CLI flags.

Every default lives here, once. :class:`SegmentConfig` is frozen; derive variants with
:func:`dataclasses.replace` or :meth:`SegmentConfig.merged`. The options fine-tuning shares with
segmentation are declared once, in :class:`ImageOptions`, which both configs extend.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import yaml

from samgeo_pipeline.errors import ConfigError
from samgeo_pipeline.options import Range, check_choices, check_ranges, coerce_option, field_docs

IndexName = Literal["auto", "dswe", "fmask", "ndwi", "mndwi", "rgb"]
DsweWater = Literal["high", "moderate", "wetland"]
PromptKind = Literal["points", "box", "text"]
TextCombine = Literal["agree", "none", "add", "skip-dry"]
PointMerge = Literal["joint", "mean", "best"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
OnUncertain = Literal["skip", "write"]

DEFAULT_MODEL = "facebook/sam-vit-base"
#: Largest ``tile_size``: a tile is held as float32 per band, several at once (prefetch + batch).
MAX_TILE_SIZE = 8192

#: The range of every numeric option of :class:`ImageOptions` (``nodata`` takes any value, NaN included).
IMAGE_RANGES: dict[str, Range] = {
    "tile_size": Range(32, MAX_TILE_SIZE, hint="working pixels; SAM sees 1024, use --gsd for more context"),
    "halo": Range(0),  # and below half the tile size: checked with it
    "gsd": Range(0, low_open=True, hint="metres per working pixel"),
    "stats_size": Range(64, hint="pixels on the longest side of the statistics read"),
    "threshold": Range(-1, 1, hint="a normalised-difference index threshold"),
    "reflectance_scale": Range(0, low_open=True, hint="reflectance per file unit, e.g. 0.0001"),
    "reflectance_offset": Range(-1, 1, hint="reflectance added after the scale"),
    "rgb_max_water": Range(0, 1, low_open=True, hint="a share of the image"),
    "texture_window": Range(3),  # and odd
    "min_area": Range(0),
    "points": Range(0),
    "negatives": Range(0),
    "erosion": Range(0),
    "box_jitter": Range(0),
    "max_components": Range(1),
    "seed": Range(0),
}

#: The range of every numeric option :class:`SegmentConfig` adds.
SEGMENT_RANGES: dict[str, Range] = {
    "max_pixels": Range(0, low_open=True),
    "max_tiles": Range(1),
    "restrict_dilation": Range(0),
    "batch_size": Range(1),
    "attention_rows": Range(0),
    "prefetch": Range(1),
    "read_workers": Range(0),
    "simplify": Range(0, hint="CRS units"),
    "text_threshold": Range(0, 1, low_open=True, high_open=True, hint="a SAM 3 instance score (sigmoid)"),
}

#: Options that change how fast a run goes but not what it writes; left out of the parameter hash.
_RUNTIME_ONLY = frozenset(
    {"overwrite", "batch_size", "prefetch", "read_workers", "progress", "max_pixels", "max_tiles", "attention_rows"}
)


_Options = TypeVar("_Options", bound="ImageOptions")


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
    """Working pixel size in metres, on any CRS (geographic: converted to degrees at the raster's centre;
    no CRS: source pixels); ``None``: native resolution."""
    # --- radiometry and coarse mask ---
    percentiles: tuple[float, float] = (2.0, 98.0)
    """Per-band percentiles (whole image, nodata excluded) mapped to 0 and 255 for SAM."""
    composite: str = "auto"
    """Bands shown to SAM as R,G,B (e.g. nir,swir,green); auto: true colour, else a false colour."""
    stats_size: int = 2048
    """Longest side of the decimated read used for whole-image statistics."""
    index: IndexName = "auto"
    """Coarse-mask method: auto = dswe (reflectance known, green, red, NIR, SWIR), else mndwi when SWIR
    is mapped, ndwi when NIR is, fmask (reflectance known, red and NIR), else rgb (dark and smooth)."""
    threshold: float | None = None
    """Fixed index threshold of mndwi/ndwi (water where index > threshold); ``None``: -0.1 for MNDWI, 0.0 for NDWI."""
    edge_otsu: bool = False
    """mndwi/ndwi without threshold: Otsu's split of the index near its Canny edges (Donchyts 2016);
    an image whose edge histogram has no valley is uncertain."""
    reflectance_scale: float | None = None
    """Reflectance = value x scale + reflectance_offset (e.g. 0.0001 for reflectance x 10000); ``None``:
    from the file's scale/offset tags, a Landsat MTL beside it, or Sentinel-2's quantification value."""
    reflectance_offset: float = 0.0
    """Reflectance offset, used with reflectance_scale (e.g. -0.1 for Sentinel-2 baseline 04.00+)."""
    dswe_water: DsweWater = "wetland"
    """dswe method: DSWE classes counted as water: high, moderate (high + moderate), wetland (+ potential
    wetland, on images with at most 1 % Fmask cloud; chosen by leave-one-source-out on shared data)."""
    rgb_max_water: float = 0.4
    """rgb method: an image with a larger dark-and-smooth share is uncertain (abstains)."""
    texture_window: int = 13
    """RGB method: side in working pixels of the window where water must be smooth."""
    min_area: int = 64
    """Connected water components smaller than this many pixels are dropped (keep <= halo)."""
    # --- prompts ---
    prompt: PromptKind = "points"
    """Prompt kind per component: dynamic-distance points or a bounding box; text: SAM 3 finds every
    instance of --text in each tile (segment only, a SAM 3 model)."""
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

    #: What :meth:`merged` calls an unknown key ("unknown option 'x'").
    _option_kind: ClassVar[str] = "option"

    def __post_init__(self) -> None:
        check_ranges(self, IMAGE_RANGES)
        check_choices(self)  # every Literal option, a subclass's too
        if not (len(self.percentiles) == 2 and 0 <= self.percentiles[0] < self.percentiles[1] <= 100):
            raise ConfigError(
                f"percentiles={','.join(map(str, self.percentiles))}: give two values low,high with 0 <= low < high <= 100"
            )
        if not 0 <= self.halo < self.tile_size // 2:
            raise ConfigError(f"halo={self.halo}: must be >= 0 and below half the tile_size ({self.tile_size})")
        if self.prompt == "points" and self.points < 1:
            raise ConfigError("prompt=points needs points >= 1")
        if self.texture_window % 2 == 0:
            raise ConfigError(f"texture_window={self.texture_window}: must be an odd number of pixels >= 3")
        if self.composite != "auto":
            parse_composite(self.composite)

    def merged(self: _Options, values: Mapping[str, Any]) -> _Options:
        """A copy with ``values`` applied (``None`` values are ignored; keys with ``-`` or ``_``);
        unknown keys raise. The one merge of both configs: YAML files, flags, stored runs."""
        known = {f.name for f in fields(self)}
        changes: dict[str, Any] = {}
        for key, value in values.items():
            key = key.replace("-", "_")
            if key not in known:
                raise ConfigError(f"unknown {self._option_kind} {key!r}; known: {', '.join(sorted(known))}")
            if value is not None:
                changes[key] = coerce_option(type(self), key, value)
        return dataclasses.replace(self, **changes)

    def with_checkpoint(self: _Options, preprocessing: dict[str, Any]) -> _Options:
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



@dataclass(frozen=True)
class SegmentConfig(ImageOptions):
    """Every option of ``samgeo-pipeline segment``: the shared :class:`ImageOptions` and these."""

    zero_collar: bool = True
    """When the file tags no nodata and has no mask, read 0 in every mapped band as nodata if such pixels cover
    at least 1 % of the image border (a fill collar; warned); off: --no-zero-collar (YAML zero_collar: false)."""
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
    quicklook only) or write (run as usual); either way the image's status is uncertain (exit code 3).
    With --prompt text the image always gets SAM 3's mask (text only)."""
    # --- SAM 3 text prompts (--prompt text) ---
    text: str = ""
    """--prompt text: comma-separated phrases SAM 3 looks for in each tile, e.g. water,river,lake (the
    union of their instances)."""
    text_threshold: float = 0.5
    """--prompt text: keep SAM 3 instances whose score (query x presence probability) is above this."""
    text_combine: TextCombine = "agree"
    """--prompt text with the coarse mask: agree (keep instances touching coarse water; dry tiles skip
    SAM 3), none (text only), add (text instances plus coarse components no instance touches),
    skip-dry (text only, on tiles with coarse water). An uncertain image uses none."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ranges(self, SEGMENT_RANGES)
        self._check_text()

    def _check_text(self) -> None:
        """Text options only with ``prompt=text``, which needs phrases and a model.

        Raises:
            ConfigError: one line naming the fix.
        """
        if self.prompt != "text":
            if self.text.strip():
                raise ConfigError(f"text={self.text!r} is only used with --prompt text (and a SAM 3 --model)")
            return
        if not self.uses_sam:
            raise ConfigError("prompt=text needs a SAM 3 model: pass --model facebook/sam3 (or a saved SAM 3 folder)")
        if not text_phrases(self.text):
            raise ConfigError("prompt=text needs --text: comma-separated phrases, e.g. --text water,river")

    @property
    def phrases(self) -> tuple[str, ...]:
        """``text`` split into its phrases (:func:`text_phrases`)."""
        return text_phrases(self.text)

    @property
    def core_size(self) -> int:
        """Side of a tile's core (the part written), in working pixels."""
        return self.tile_size - 2 * self.halo

    @property
    def uses_sam(self) -> bool:
        """False for ``--model none`` (the coarse mask alone)."""
        return self.model.lower() != "none"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of every option."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def params_hash(self) -> str:
        """Hash of the options that change the outputs (runtime-only options excluded)."""
        params = {k: v for k, v in self.to_dict().items() if k not in _RUNTIME_ONLY}
        return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def text_phrases(text: str) -> tuple[str, ...]:
    """``"water, river,,lake"`` -> ``("water", "river", "lake")``: comma-separated, stripped, empty ones and repeats dropped."""
    return tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))


def parse_composite(spec: str | list[str] | tuple[str, ...]) -> tuple[str, str, str]:
    """``"nir,swir,green"`` (or a sequence) -> three band names shown to SAM as R, G, B.

    Raises:
        ConfigError: not three known band names.
    """
    from samgeo_pipeline.io.bands import BAND_NAMES

    names = [n.strip().lower() for n in (spec.split(",") if isinstance(spec, str) else spec)]
    if len(names) != 3 or any(n not in BAND_NAMES for n in names):
        raise ConfigError(
            f"composite={spec!r}: give three band names out of {', '.join(BAND_NAMES)}, e.g. nir,swir,green"
        )
    return names[0], names[1], names[2]


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
    if isinstance(data.get("text"), list):  # text: [water, river]
        data["text"] = ",".join(str(v) for v in data["text"])
    if isinstance(data.get("composite"), list):
        data["composite"] = ",".join(str(v) for v in data["composite"])
    return data


def config_field_docs() -> dict[str, str]:
    """:func:`field_docs` of :class:`SegmentConfig` (the ``segment`` flags)."""
    return field_docs(SegmentConfig)


__all__ = ["ImageOptions", "SegmentConfig", "DEFAULT_MODEL", "load_config_file", "config_field_docs", "field_docs",
           "parse_composite", "text_phrases"]
