"""What a run returns: per-input status, tile counts and failed tiles, and the manifest written.

The tile counts (:class:`~samgeo_pipeline.outputs.manifest.TileCounts`) and the manifest
(:class:`~samgeo_pipeline.outputs.manifest.Manifest`) are the manifest's own records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from samgeo_pipeline.outputs.manifest import Manifest, TileCounts

Status = Literal["done", "skipped", "partial", "failed", "uncertain"]


@dataclass
class SegmentResult:
    """Outcome of one input; ``error`` is a one-line reason when ``status`` is failed/partial.

    ``uncertain`` is the coarse rule's reason when it cannot tell water from land on this image
    (:attr:`~samgeo_pipeline.water.coarse.CoarseRule.uncertain`; also set on a reused result whose
    manifest says so): the status is then ``uncertain`` (or ``partial``/``skipped``, which say more).
    ``manifest`` is the manifest written (or the earlier one reused), None when none was.
    """

    input: Path
    out_dir: Path
    status: Status
    error: str | None = None
    tiles: TileCounts = field(default_factory=TileCounts)
    water_fraction: float | None = None
    water_area_m2: float | None = None
    polygons: int | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    manifest: Manifest | None = None
    uncertain: str | None = None


def uncertain_hint(method: str) -> str:
    """What a user can do about an image whose coarse rule abstained (``method``: the rule's)."""
    if method == "rgb":
        specific = "raise --rgb-max-water if the scene really is mostly water, "
    else:
        specific = (
            f"pass --threshold for {method.upper()}, or --reflectance-scale when you know the values' "
            "reflectance scale (DSWE then runs), "
        )
    return (
        f"map NIR/SWIR with --bands if the file has them, {specific}check quicklook.png, "
        "or pass --on-uncertain write to keep the coarse mask anyway"
    )


__all__ = ["Status", "SegmentResult", "uncertain_hint"]
