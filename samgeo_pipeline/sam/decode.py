"""SAM's prompted decoder without padding points: prompt rows grouped by shape, one call per group.

A *row* is one decoder prompt: a component's points (``joint``), one positive point with the
component's negatives (``mean``/``best``), or a box. SAM's decoder attends over all tokens of a
row, so a row padded with "not a point" tokens gives another mask than the row alone. Rows are
therefore never padded: the rows of a batch of images are grouped by (point count, box), and each
group is decoded in one call for all images of the batch. Inside a call, images with fewer rows
of the group repeat one of their rows (rows are decoded independently; the repeats are dropped).

The same functions serve inference (:class:`~samgeo_pipeline.sam.predictor.SamPredictor`, under
``inference_mode``) and fine-tuning (with gradients): every step is a differentiable torch op.

Embeddings: SAM's are one ``(B, C, e, e)`` tensor, passed to the model as ``image_embeddings``;
other families (:mod:`samgeo_pipeline.models`) pass a dict of the model's keyword arguments
(``image_embeddings`` and, for SAM-HQ, ``intermediate_embeddings``), each a batch-first tensor or a
list of them (SAM 2's feature levels). Either way a row group selects its images from every one.

Frames: rows are in SAM's input frame (:func:`~samgeo_pipeline.sam.geometry.scale_coords`);
decoder masks are ``(m, m)`` in SAM's mask frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from samgeo_pipeline.sam.geometry import scale_coords
from samgeo_pipeline.water.prompts import ComponentPrompt

#: A batch's image embeddings: SAM's tensor, or a family's decoder keyword arguments (module doc).
Embeddings = torch.Tensor | dict[str, torch.Tensor | list[torch.Tensor]]

#: Logit of "no component here" (finite, so that losses and autocast stay finite).
NO_MASK_LOGIT = -1.0e4

MERGES = ("joint", "mean", "best")


@dataclass(frozen=True)
class PromptRows:
    """One image's decoder rows, in SAM's input frame.

    Attributes:
        points: per row, ``float32 (n, 2)`` ``(x, y)`` (``(0, 2)`` for a box row).
        labels: per row, ``int64 (n,)``: 1 positive, 0 negative.
        boxes: per row, ``float32 (4,)`` ``xyxy``, or None for a point row.
        component: ``int64 (rows,)``: the component (0, 1, ...) each row belongs to.
    """

    points: tuple[np.ndarray, ...]
    labels: tuple[np.ndarray, ...]
    boxes: tuple[np.ndarray | None, ...]
    component: np.ndarray

    @property
    def n_components(self) -> int:
        return int(self.component.max()) + 1 if len(self.component) else 0

    def key(self, row: int) -> tuple[int, bool]:
        """What rows decoded in one call share: point count and whether there is a box."""
        return len(self.points[row]), self.boxes[row] is not None


def prompt_rows(
    prompts: Sequence[ComponentPrompt], merge: str, shape: tuple[int, int], resized: tuple[int, int]
) -> PromptRows:
    """Decoder rows of one image's component prompts.

    Args:
        prompts: one prompt per component, coordinates in the tile frame.
        merge: ``joint`` (one row per component), ``mean``/``best`` (one row per positive point with
            the component's negatives); a box is one row whatever the merge.
        shape: the tile's ``(rows, cols)``; resized: its size in SAM's input frame.

    Returns:
        The rows, scaled to the input frame. Components without a row (no point, no box) are
        left out, the others numbered 0, 1, ... in order.
    """
    if merge not in MERGES:
        raise ValueError(f"point merge {merge!r}: use one of {', '.join(MERGES)}")
    points, labels, boxes, component = [], [], [], []
    k = 0
    for p in prompts:
        rows = _component_rows(p, merge)
        for xy, lab, box in rows:
            points.append(scale_coords(xy, shape, resized).reshape(-1, 2))
            labels.append(np.asarray(lab, np.int64))
            boxes.append(None if box is None else scale_coords(np.reshape(box, (2, 2)), shape, resized).reshape(4))
            component.append(k)
        k += bool(rows)
    return PromptRows(tuple(points), tuple(labels), tuple(boxes), np.asarray(component, np.int64))


def _component_rows(p: ComponentPrompt, merge: str) -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """``(points, labels, box)`` of each row of one component, in the tile frame."""
    if p.box_xyxy is not None:
        return [(np.zeros((0, 2), np.float32), np.zeros(0, np.int64), p.box_xyxy)]
    if merge == "joint":
        return [(p.points_xy, p.labels, None)] if len(p.labels) else []
    negative = p.labels == 0
    return [(np.concatenate([xy[None], p.points_xy[negative]]), np.r_[1, p.labels[negative]], None)
            for xy in p.points_xy[p.labels == 1]]  # fmt: skip


@dataclass
class RowGroup:
    """Rows of one shape from several images of a batch: one decoder call.

    Attributes:
        images: ``int64 (G,)`` the batch index of each image in the call.
        points, labels: ``float32 (G, P, N, 2)`` and ``int64 (G, P, N)``, or None (box rows).
        boxes: ``float32 (G, P, 4)``, or None (point rows).
        slots: ``int64 (k,)`` which of the ``G * P`` outputs are real rows (not repeats), in order.
        whole: whether ``images`` is the whole batch in order (the embeddings need no selection).
    """

    images: torch.Tensor
    points: torch.Tensor | None
    labels: torch.Tensor | None
    boxes: torch.Tensor | None
    slots: torch.Tensor
    whole: bool

    def prompt_kwargs(self) -> dict[str, torch.Tensor]:
        """The prompt arguments of ``SamModel.forward``."""
        kwargs = {"input_points": self.points, "input_labels": self.labels, "input_boxes": self.boxes}
        return {name: value for name, value in kwargs.items() if value is not None}


@dataclass
class RowBatch:
    """The decoder rows of a batch of images, grouped for unpadded decoding.

    Rows are numbered image by image (rows of image 0 first), components too.

    Attributes:
        groups: one :class:`RowGroup` per distinct row shape.
        order: ``int64 (R,)``: row ``r`` is output ``order[r]`` of the groups' outputs concatenated.
        component: ``int64 (R,)`` the (batch-wide) component of each row.
        counts: components per image.
    """

    groups: list[RowGroup]
    order: torch.Tensor
    component: torch.Tensor
    counts: list[int]

    @classmethod
    def build(cls, images: Sequence[PromptRows]) -> RowBatch:
        """Group the rows of a batch of images (one :class:`PromptRows` each, possibly without rows)."""
        by_key: dict[tuple[int, bool], dict[int, list[int]]] = {}
        offsets = np.cumsum([0] + [len(r.component) for r in images])
        for b, rows in enumerate(images):
            for i in range(len(rows.component)):
                by_key.setdefault(rows.key(i), {}).setdefault(b, []).append(i)
        groups, produced = [], []
        for members in by_key.values():
            groups.append(_group(images, members, len(images)))
            produced += [int(offsets[b]) + i for b, index in members.items() for i in index]
        counts = [r.n_components for r in images]
        first = np.cumsum([0] + counts[:-1])
        component = [first[b] + r.component for b, r in enumerate(images)]
        return cls(
            groups=groups,
            order=torch.from_numpy(np.argsort(np.asarray(produced, np.int64), kind="stable")),
            component=torch.from_numpy(np.concatenate(component or [np.zeros(0, np.int64)]).astype(np.int64)),
            counts=counts,
        )

    @property
    def n_rows(self) -> int:
        return len(self.component)

    def to(self, device: torch.device) -> RowBatch:
        """The tensors moved to ``device``."""

        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device, non_blocking=True)

        def move_optional(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else move(t)

        groups = [RowGroup(move(g.images), move_optional(g.points), move_optional(g.labels), move_optional(g.boxes),
                           move(g.slots), g.whole)
                  for g in self.groups]  # fmt: skip
        return replace(self, groups=groups, order=move(self.order), component=move(self.component))


def _group(images: Sequence[PromptRows], members: dict[int, list[int]], batch: int) -> RowGroup:
    """One call's tensors: each member image's rows of one shape, padded with repeats of its first row."""
    width = max(len(index) for index in members.values())
    chosen = [(images[b], index + index[:1] * (width - len(index))) for b, index in members.items()]
    n_points, has_box = chosen[0][0].key(chosen[0][1][0])

    def stack(field: str) -> torch.Tensor:
        return torch.from_numpy(np.stack([np.stack([getattr(rows, field)[i] for i in index]) for rows, index in chosen]))

    return RowGroup(
        images=torch.tensor(list(members), dtype=torch.int64),
        points=stack("points") if n_points else None,
        labels=stack("labels") if n_points else None,
        boxes=stack("boxes") if has_box else None,
        slots=torch.tensor([g * width + j for g, index in enumerate(members.values()) for j in range(len(index))]),
        whole=list(members) == list(range(batch)),
    )


def decode_rows(model: torch.nn.Module, embeddings: Embeddings, batch: RowBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """Every row's single-mask decoder output, one ``SamModel`` call per row group.

    Args:
        model: a transformers ``SamModel`` (called with ``image_embeddings``; any autocast applies).
        embeddings: the batch's image embeddings (``(B, C, e, e)``, or a family's dict: module doc).
        batch: the rows, on the model's device.

    Returns:
        ``(low_res, iou)``: ``(R, m, m)`` mask-frame logits and ``(R,)`` predicted IoU, in row order.
    """
    masks, scores = [], []
    for group in batch.groups:
        out = model(multimask_output=False, **_embedding_kwargs(embeddings, group), **group.prompt_kwargs())
        masks.append(out.pred_masks[:, :, 0].flatten(0, 1).index_select(0, group.slots))
        scores.append(out.iou_scores[:, :, 0].flatten().index_select(0, group.slots))
    return torch.cat(masks).index_select(0, batch.order), torch.cat(scores).index_select(0, batch.order)


def _embedding_kwargs(embeddings: Embeddings, group: RowGroup) -> dict[str, torch.Tensor | list[torch.Tensor]]:
    """The model's embedding keyword arguments for one row group: each tensor narrowed to the group's images."""
    if isinstance(embeddings, torch.Tensor):
        return {"image_embeddings": embeddings if group.whole else embeddings.index_select(0, group.images)}
    if group.whole:
        return dict(embeddings)

    def select(value: torch.Tensor | list[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        if isinstance(value, torch.Tensor):
            return value.index_select(0, group.images)
        return [v.index_select(0, group.images) for v in value]

    return {name: select(value) for name, value in embeddings.items()}


def main_embedding(embeddings: Embeddings) -> torch.Tensor:
    """The ``(B, C, e, e)`` embedding the decoder's masks are 4 ``e`` a side of (SAM 2: the last level)."""
    if isinstance(embeddings, torch.Tensor):
        return embeddings
    value = embeddings["image_embeddings"]
    return value if isinstance(value, torch.Tensor) else value[-1]


def merge_rows(low_res: torch.Tensor, iou: torch.Tensor, batch: RowBatch, merge: str) -> torch.Tensor:
    """``(R, m, m)`` row logits -> ``(K, m, m)`` component logits (components of all images, in order).

    ``joint``: a component's only row; ``mean``: the mean of its rows; ``best``: its row with the
    highest predicted IoU (the first on ties).
    """
    n = sum(batch.counts)
    if n == len(low_res):  # one row per component (joint, boxes): nothing to merge
        return low_res
    rows = torch.arange(len(low_res), device=low_res.device)
    if merge == "best":
        score = torch.full((len(low_res), n), -torch.inf, device=iou.device)
        score[rows, batch.component] = iou.detach().float()
        return low_res.index_select(0, score.argmax(0))
    total = low_res.new_zeros((n, *low_res.shape[1:])).index_add(0, batch.component, low_res)
    count = torch.bincount(batch.component, minlength=n).to(low_res.dtype)
    return total / count[:, None, None]


def component_logits(model: torch.nn.Module, embeddings: Embeddings, batch: RowBatch, merge: str) -> list[torch.Tensor]:
    """Each image's ``(k, m, m)`` component logits (``k`` may be 0): :func:`decode_rows` + :func:`merge_rows`."""
    if batch.n_rows == 0:
        main = main_embedding(embeddings)
        side = 4 * main.shape[-1]
        return [main.new_zeros((0, side, side)) for _ in batch.counts]
    components = merge_rows(*decode_rows(model, embeddings, batch), batch, merge)
    return list(torch.split(components, batch.counts))


__all__ = ["PromptRows", "RowBatch", "RowGroup", "prompt_rows", "decode_rows", "merge_rows", "component_logits",
           "main_embedding", "Embeddings", "NO_MASK_LOGIT", "MERGES"]  # fmt: skip
