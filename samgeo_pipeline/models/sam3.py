"""SAM 3 on tiles: square input, one vision pass per batch, every instance of a text per tile.

As transformers' ``Sam3Processor`` and ``Sam3Model``: a tile is stretched to ``image_size`` square
(1008 for released models), scaled to [0, 1] and normalised with mean 0.5, std 0.5
(:func:`~samgeo_pipeline.sam.geometry.square_pixels`). The vision encoder runs once per batch of
tiles (:meth:`Sam3Predictor.embed`); each phrase is tokenised with the model folder's CLIP
tokenizer (padded to the text encoder's 32 positions) and encoded once per run, then decoded
against the batch's vision features (DETR encoder/decoder and mask decoder, one call per phrase).
An instance's score is its query's probability times the image's presence probability (as
``post_process_instance_segmentation``); instances above the threshold are kept, their mask
logits (``(k, m, m)``, m = image_size / 14 * 4) resized bilinearly straight to the tile
(:func:`~samgeo_pipeline.sam.geometry.upsample_square_masks`) and thresholded at 0 (probability 0.5).

Point and box prompts are refused (:func:`~samgeo_pipeline.models.families.check_prompt`):
transformers' ``Sam3Model`` takes no points, and its boxes are exemplars ("more like this"), not
the object to segment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, cast

import numpy as np
import torch

if TYPE_CHECKING:
    from transformers import Sam3Model

from samgeo_pipeline.config import TextCombine
from samgeo_pipeline.errors import ModelUnavailableError, first_line
from samgeo_pipeline.models.families import check_prompt
from samgeo_pipeline.sam.decode import Embeddings
from samgeo_pipeline.sam.geometry import square_pixels, upsample_square_masks
from samgeo_pipeline.sam.predictor import SamPredictor
from samgeo_pipeline.water.prompts import ComponentPrompt

#: SAM 3's input normalisation (``Sam3ImageProcessor``: IMAGENET_STANDARD_MEAN / STD).
SAM3_MEAN = (0.5, 0.5, 0.5)
SAM3_STD = (0.5, 0.5, 0.5)


def load_tokenizer(folder: Path) -> Any:
    """The CLIP tokenizer saved beside a SAM 3 model (``tokenizer.json``, or ``vocab.json`` + ``merges.txt``).

    Read from the folder only (``local_files_only``); the files are JSON / text, never pickles.

    Raises:
        ModelUnavailableError: no readable tokenizer there; the message says how to save one.
    """
    from transformers import CLIPTokenizer

    hint = "save the processor beside the model: Sam3Processor.from_pretrained('facebook/sam3').save_pretrained(DIR)"
    if not (folder / "tokenizer.json").is_file() and not all((folder / n).is_file() for n in ("vocab.json", "merges.txt")):
        raise ModelUnavailableError(f"{folder}: no SAM 3 tokenizer (tokenizer.json, or vocab.json and merges.txt); {hint}")
    try:
        return CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ModelUnavailableError(f"{folder}: unreadable SAM 3 tokenizer ({first_line(exc)}); {hint}") from None


@dataclass
class Sam3Predictor(SamPredictor):
    """:class:`~samgeo_pipeline.sam.predictor.SamPredictor` for a transformers ``Sam3Model``, answering text prompts.

    Args (besides the base class's):
        tokenizer: a CLIP tokenizer; None: loaded from the folder the model was loaded from
            (``model.name_or_path``, :func:`load_tokenizer`).
    """

    tokenizer: Any = None
    _texts: dict[tuple[str, ...], tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict, init=False, repr=False)
    """phrases -> their ``(features (T, 32, d), attention mask (T, 32))`` on the device."""

    family: ClassVar[str] = "sam3"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.tokenizer is None:
            self.tokenizer = load_tokenizer(Path(str(self._sam3.name_or_path)))

    @property
    def _sam3(self) -> Sam3Model:
        return cast("Sam3Model", self.model)

    def _read_image_size(self) -> int:
        config: Any = self._sam3.config  # a transformers Sam3Config
        return int(config.vision_config.backbone_config.image_size)

    def _pixel_values(self, tiles: np.ndarray | Sequence[np.ndarray]) -> tuple[torch.Tensor, tuple[int, int]]:
        pixels = square_pixels(self._to_device(tiles), self.image_size, SAM3_MEAN, SAM3_STD)
        return pixels, (self.image_size, self.image_size)

    def _encode(self, pixel_values: torch.Tensor) -> Embeddings:
        return {"vision_embeds": self._sam3.get_vision_features(pixel_values)}

    def predict_masks(self, embeddings: Embeddings, prompts: Sequence[list[ComponentPrompt]], tile_shape: tuple[int, int],
                      resized: tuple[int, int], merge: str = "joint", logits: bool = False) -> list[np.ndarray]:  # fmt: skip
        """Refused: SAM 3 answers text prompts here (:meth:`predict_text`,
        :func:`~samgeo_pipeline.models.families.check_prompt`)."""
        check_prompt("points", self.family, str(self.model.name_or_path))
        raise AssertionError("unreachable")

    @torch.inference_mode()
    def predict_text(
        self, embeddings: Embeddings, phrases: Sequence[str], threshold: float, tile_shape: tuple[int, int]
    ) -> list[np.ndarray]:
        """Every instance of any phrase in each tile of an encoder batch (module doc).

        Args:
            embeddings: :meth:`embed`'s ``{"vision_embeds": Sam3VisionEncoderOutput}`` of B tiles.
            phrases: the texts (each decoded alone; their instances are pooled).
            threshold: keep instances whose score (query x presence probability) is above it.
            tile_shape: ``(rows, cols)`` of the tiles.

        Returns:
            Per tile, ``bool (k, rows, cols)`` instance masks in the tile frame (``k`` may be 0).
        """
        assert isinstance(embeddings, dict)  # a Sam3VisionEncoderOutput (fpn_hidden_states, ...) under one key
        vision: Any = embeddings["vision_embeds"]
        batch = vision.fpn_hidden_states[0].shape[0]
        features, mask = self._text_features(tuple(phrases))
        kept: list[list[torch.Tensor]] = [[] for _ in range(batch)]
        for i in range(len(features)):
            masks, scores = self._decode(vision, features[i : i + 1].expand(batch, -1, -1), mask[i : i + 1].expand(batch, -1))
            for b in range(batch):
                kept[b].append(masks[b][scores[b] > threshold])
        return [self._to_tile(torch.cat(k), tile_shape) for k in kept]

    @torch.inference_mode()
    def _decode(self, vision: Any, features: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One phrase against B tiles: ``(mask logits (B, Q, m, m), scores (B, Q))``."""
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        with self._autocast():
            out = self._sam3(vision_embeds=vision, text_embeds=BaseModelOutputWithPooling(pooler_output=features),
                             attention_mask=mask)  # fmt: skip
        scores = out.pred_logits.float().sigmoid() * out.presence_logits.float().sigmoid()
        return out.pred_masks, scores

    @torch.inference_mode()
    def _text_features(self, phrases: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """The phrases' text features ``(T, L, d)`` and attention mask ``(T, L)``, encoded once per run."""
        if phrases not in self._texts:
            config: Any = self._sam3.config  # a transformers Sam3Config
            length = int(config.text_config.max_position_embeddings)
            tokens = self.tokenizer(list(phrases), padding="max_length", max_length=length, truncation=True,
                                    return_tensors="pt").to(self.device)  # fmt: skip
            with self._autocast():
                out = self._sam3.get_text_features(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
            self._texts[phrases] = (out.pooler_output, tokens["attention_mask"])
        return self._texts[phrases]

    def _to_tile(self, logits: torch.Tensor, tile_shape: tuple[int, int]) -> np.ndarray:
        """``(k, m, m)`` instance logits -> ``bool (k, rows, cols)`` on the host."""
        if len(logits) == 0:
            return np.zeros((0, *tile_shape), bool)
        return (upsample_square_masks(logits, tile_shape) > 0).cpu().numpy()


class TextOptions(Protocol):
    """The text-prompt options SAM 3 runs with; :class:`~samgeo_pipeline.config.SegmentConfig` satisfies it."""

    # Read-only properties: the configs are frozen dataclasses (``phrases`` is a property there).
    @property
    def phrases(self) -> tuple[str, ...]: ...
    @property
    def text_threshold(self) -> float: ...
    @property
    def text_combine(self) -> TextCombine: ...


class TextRecordOptions(TextOptions, Protocol):
    """The options :func:`prompt_record` reads; :class:`~samgeo_pipeline.config.SegmentConfig` satisfies it."""

    # A property lets ``prompt`` be the configs' narrower ``Literal``.
    @property
    def prompt(self) -> str: ...


def combine_used(config: TextOptions, uncertain: object | None) -> TextCombine:
    """The combination an image uses: ``config.text_combine``, or ``none`` when its coarse rule is uncertain."""
    return "none" if uncertain is not None else config.text_combine


def prompt_record(config: TextRecordOptions, uncertain: object | None) -> dict[str, Any]:
    """The manifest's ``prompt``: the kind, and for text the phrases, threshold, combination asked and used."""
    if config.prompt != "text":
        return {"kind": config.prompt}
    used = combine_used(config, uncertain)
    record = {"kind": "text", "text": list(config.phrases), "threshold": config.text_threshold,
              "combine": config.text_combine, "combine_used": used}  # fmt: skip
    if used != config.text_combine:
        record["note"] = f"the coarse rule is uncertain on this image: text only (combine none, not {config.text_combine})"
    return record


__all__ = ["Sam3Predictor", "load_tokenizer", "TextOptions", "TextRecordOptions", "combine_used", "prompt_record"]
