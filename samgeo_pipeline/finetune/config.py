"""The one typed configuration of fine-tuning, layered like the segment pipeline's.

:class:`FinetuneConfig` is frozen; every default lives here. Options shared with segmentation
(band mapping, composite, percentiles, coarse mask, prompts, tiling) carry the same names and
meanings as in :class:`~samgeo_pipeline.config.SegmentConfig`, and :meth:`FinetuneConfig.segment_config`
hands them to the segment library, so training inputs are made by the same code as inference inputs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Literal

from samgeo_pipeline.config import ImageOptions, SegmentConfig, load_config_file
from samgeo_pipeline.errors import ConfigError
from samgeo_pipeline.options import Range, check_ranges

PromptSource = Literal["label", "coarse"]
LossName = Literal["focal_dice", "bce"]
Schedule = Literal["cosine", "linear", "constant"]
CacheMode = Literal["memory", "disk", "off"]
CacheDtype = Literal["auto", "fp32", "fp16", "bf16"]

#: Options shared with :class:`SegmentConfig` (same names, same meaning): those of :class:`ImageOptions`.
SHARED_WITH_SEGMENT = tuple(f.name for f in fields(ImageOptions) if f.name != "progress")

#: Options that may change between a run and its ``--resume`` (they do not change the result on CPU).
RUNTIME_ONLY = frozenset(
    {"out", "resume", "stop_after_epoch", "workers", "progress", "cache", "cache_dir", "device", "max_images"}
)

@dataclass(frozen=True)
class FinetuneConfig(ImageOptions):
    """Every option of ``samgeo-pipeline finetune`` (and the data options of ``evaluate``).

    The options shared with segmentation (band mapping, composite, percentiles, coarse mask, prompts,
    tiling, model, device, seed) are :class:`~samgeo_pipeline.config.ImageOptions`' own fields,
    declared and validated there; only ``halo`` and ``box_jitter`` take other defaults for training.
    """

    # --- data ---
    data: str = ""
    """Training data: a Hugging Face dataset (hub name or save_to_disk folder), a chip folder
    (images/ + labels/), or an orthoimage (GeoTIFF) with --labels."""
    labels: str | None = None
    """For an orthoimage: label raster (water > 0) or label polygons (GeoPackage, any CRS)."""
    val_data: str | None = None
    """Validation data in any --data form; None: the dataset's validation split, else --val-fraction."""
    val_labels: str | None = None
    """Labels of --val-data when it is an orthoimage."""
    val_fraction: float = 0.2
    """Share of samples held out for validation when the data has no validation split (by name hash)."""
    train_split: str = "train"
    """Split of a Hugging Face dataset used for training."""
    val_split: str = "validation"
    """Split of a Hugging Face dataset used for validation (when present)."""
    image_column: str = "image"
    """Column of a Hugging Face dataset holding the image (RGB or multi-band array)."""
    label_column: str = "label"
    """Column of a Hugging Face dataset holding the label (water > 0)."""
    images_dir: str = "images"
    """Sub-folder of a chip folder holding the image chips."""
    labels_dir: str = "labels"
    """Sub-folder of a chip folder holding the label chips (same stem as the image)."""
    label_ignore: int | None = None
    """Label value meaning 'unknown' (ignored in loss and metrics); other values > 0 are water."""
    max_images: int | None = None
    """Use at most this many samples per split (quick runs)."""
    # --- options shared with segment (ImageOptions), with training's own defaults ---
    halo: int = 0
    """Context kept around each chip's core when chips are cut from an orthoimage (0: none required)."""
    box_jitter: int = 10
    """Each box coordinate moves by a random integer in [-box_jitter, box_jitter] pixels."""
    # --- prompts and training ---
    prompt_source: PromptSource = "label"
    """Where training prompts come from: the label mask, or the coarse mask (as at inference)."""
    train_prompt_encoder: bool = False
    """Also train the prompt encoder (the mask decoder is always trained)."""
    epochs: int = 50
    """Training epochs."""
    batch_size: int = 4
    """Images per optimisation step (per process)."""
    lr: float = 1e-5
    """Peak learning rate of AdamW."""
    weight_decay: float = 2e-4
    """AdamW weight decay."""
    warmup_steps: int = 10
    """Linear warm-up steps from lr/warmup_steps to lr."""
    schedule: Schedule = "cosine"
    """Decay after warm-up: cosine (to 0), linear (to 0) or constant."""
    grad_clip: float = 1.0
    """Clip the gradient norm to this (0: no clipping)."""
    loss: LossName = "focal_dice"
    """focal_dice (focal_weight * focal + dice_weight * dice) or bce."""
    focal_weight: float = 20.0
    """Weight of the focal loss (SAM's paper: 20)."""
    dice_weight: float = 1.0
    """Weight of the dice loss (SAM's paper: 1)."""
    focal_gamma: float = 2.0
    """Focal loss gamma."""
    focal_alpha: float = 0.25
    """Focal loss alpha (weight of water pixels; negative: none)."""
    # --- embedding cache ---
    cache: CacheMode = "memory"
    """Image-embedding cache: memory (on the device), disk, or off (encoder at every step)."""
    cache_dir: str | None = None
    """Folder of the disk cache (default OUT/embedding_cache)."""
    cache_dtype: CacheDtype = "auto"
    """Dtype of cached embeddings; auto: the mixed-precision dtype, fp32 without."""
    # --- run ---
    out: str = "finetune_out"
    """Output folder: best/ and last/ checkpoints, history.json, curves.png."""
    resume: bool = False
    """Continue the run in --out from its last checkpoint (optimizer, scheduler, epoch, RNG)."""
    stop_after_epoch: int | None = None
    """End this run after that epoch (continue later with --resume)."""
    workers: int | None = None
    """Data-loading worker processes; None: 0 on CPU, up to 8 on CUDA."""

    _option_kind: ClassVar[str] = "finetune option"

    def __post_init__(self) -> None:
        super().__post_init__()  # the shared options, with SegmentConfig's rules
        if self.prompt == "text":
            raise ConfigError("prompt=text: fine-tuning and evaluate take points or box prompts (text prompts are "
                              "SAM 3's, for segment only)")  # fmt: skip
        check_ranges(self, FINETUNE_RANGES)

    def segment_config(self) -> SegmentConfig:
        """The shared options as a :class:`SegmentConfig` (for stats, coarse mask, prompts, tiling)."""
        return SegmentConfig(**{name: getattr(self, name) for name in SHARED_WITH_SEGMENT}, progress=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of every option."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def differences(self, other: FinetuneConfig, ignore: frozenset[str] = RUNTIME_ONLY) -> dict[str, tuple[Any, Any]]:
        """Options (outside ``ignore``) whose values differ: name -> (self's, other's)."""
        a, b = self.to_dict(), other.to_dict()
        return {k: (a[k], b[k]) for k in a if k not in ignore and a[k] != b[k]}


#: The range of every numeric option :class:`FinetuneConfig` adds (``label_ignore`` takes any label value).
FINETUNE_RANGES: dict[str, Range] = {
    "val_fraction": Range(0, 1, high_open=True),
    "max_images": Range(1),
    "epochs": Range(1),
    "batch_size": Range(1),
    "lr": Range(0, low_open=True),
    "weight_decay": Range(0),
    "warmup_steps": Range(0),
    "grad_clip": Range(0, hint="0: no clipping"),
    "focal_weight": Range(0),
    "dice_weight": Range(0),
    "focal_gamma": Range(0),
    "focal_alpha": Range(high=1, hint="negative: no weighting"),
    "stop_after_epoch": Range(1),
    "workers": Range(0),
}

def load_finetune_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML file of finetune options (keys as in :class:`FinetuneConfig`, ``-`` or ``_``).

    Same file format as ``segment``'s ``--config`` (band mapping and composite may be a mapping / list).
    """
    return load_config_file(path)


__all__ = ["FinetuneConfig", "load_finetune_file", "SHARED_WITH_SEGMENT", "RUNTIME_ONLY"]
