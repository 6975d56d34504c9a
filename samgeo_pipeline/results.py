"""What a run returns: per-input status, tile counts and failed tiles (used by pipeline and manifest)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypedDict

Status = Literal["done", "skipped", "partial", "failed"]


class FailedTile(TypedDict):
    """A tile SAM could not segment (written as nodata): grid row and column, and the one-line reason."""

    row: int
    col: int
    reason: str


@dataclass
class TileCounts:
    """How many tiles went which way; ``failed_tiles`` lists each failed tile with its reason."""

    total: int = 0
    sam: int = 0
    coarse_only: int = 0
    skipped: int = 0
    failed: int = 0
    failed_tiles: list[FailedTile] = field(default_factory=list)


@dataclass
class SegmentResult:
    """Outcome of one input; ``error`` is a one-line reason when ``status`` is failed/partial."""

    input: Path
    out_dir: Path
    status: Status
    error: str | None = None
    tiles: TileCounts = field(default_factory=TileCounts)
    water_fraction: float | None = None
    water_area_m2: float | None = None
    polygons: int | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    manifest: dict | None = None


__all__ = ["Status", "FailedTile", "TileCounts", "SegmentResult"]
