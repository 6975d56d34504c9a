"""The tile sink: writes each tile's core (source pixels) into the output rasters and keeps the counts.

Cores are cut only through :func:`~samgeo_pipeline.io.tiling.core_of` and
:meth:`~samgeo_pipeline.io.tiling.Tile.core_window`, so the tiling owns all core geometry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
from scipy import ndimage

from samgeo_pipeline.io.raster import RasterInfo
from samgeo_pipeline.io.tiling import core_of
from samgeo_pipeline.outputs.manifest import TileCounts
from samgeo_pipeline.outputs.writers import MASK_NODATA, WindowedRasterWriter
from samgeo_pipeline.run.prepare import PreparedTile


class SinkOptions(Protocol):
    """The options :class:`TileSink` reads; :class:`~samgeo_pipeline.config.SegmentConfig` satisfies it."""

    # Read-only properties: the configs are frozen dataclasses.
    @property
    def probability(self) -> bool: ...
    @property
    def restrict_dilation(self) -> int: ...


class TileSink:
    """Writes ``mask.tif`` (and ``probability.tif``) tile by tile; counts tiles and water pixels.

    Args:
        info: the input raster (the outputs are on its grid).
        config: options (``probability``, ``restrict_dilation``).
        out_dir: the input's output folder.

    Raises:
        OutputWriteError: a work file cannot be created (nothing is left behind).
    """

    def __init__(self, info: RasterInfo, config: SinkOptions, out_dir: Path) -> None:
        self.info = info
        self.config = config
        self.mask = WindowedRasterWriter(info, out_dir / "mask.tif", "uint8", MASK_NODATA)
        try:
            self.prob = (
                WindowedRasterWriter(info, out_dir / "probability.tif", "float32", float("nan"))
                if config.probability
                else None
            )
        except BaseException:
            self.mask.remove_work()  # no work file is left behind
            raise
        self.counts = TileCounts()
        self.water_pixels = 0
        self.valid_pixels = 0

    def write(self, prepared: PreparedTile, sam: np.ndarray | None) -> None:
        """Write a tile's core.

        Args:
            prepared: the tile.
            sam: SAM's answer for the tile in working pixels: a ``bool`` water mask, or ``float32``
                logits (water where > 0; needed for ``probability.tif``); None: use the coarse mask.
        """
        water = prepared.coarse if sam is None else (sam if sam.dtype == bool else sam > 0)
        if sam is not None and self.config.restrict_dilation > 0:
            water = water & ndimage.binary_dilation(prepared.coarse, iterations=self.config.restrict_dilation)
        valid = self._core(prepared, prepared.valid)
        out_core = np.where(valid, self._core(prepared, water), np.uint8(MASK_NODATA))
        n_valid = int(np.count_nonzero(valid))
        self.valid_pixels += n_valid
        self.water_pixels += int(np.count_nonzero(out_core == 1)) if n_valid else 0
        self._write(prepared, out_core, self._probability(prepared, sam))

    def fail(self, prepared: PreparedTile, reason: str) -> None:
        """Write a tile SAM could not segment as nodata and list it with ``reason`` (one line)."""
        tile = prepared.tile
        self.counts.failed += 1
        self.counts.failed_tiles.append({"row": tile.row, "col": tile.col, "reason": reason})
        valid = self._core(prepared, prepared.valid)
        nan = np.full(prepared.valid.shape, np.nan, np.float32) if self.prob is not None else None
        self._write(prepared, np.full(valid.shape, MASK_NODATA, np.uint8), nan)

    def _core(self, prepared: PreparedTile, mask: np.ndarray) -> np.ndarray:
        """``bool`` core of a working-pixel ``bool`` mask, on the source grid."""
        info = self.info
        return core_of(prepared.tile, mask.view(np.uint8), info.height, info.width).view(bool)

    def _probability(self, prepared: PreparedTile, sam: np.ndarray | None) -> np.ndarray | None:
        """``float32`` water probability in working pixels (NaN outside valid data), or None."""
        if self.prob is None:
            return None
        if sam is None or sam.dtype == bool:
            prob = (prepared.coarse if sam is None else sam).astype(np.float32)
        else:
            prob = (1.0 / (1.0 + np.exp(-np.clip(sam, -50, 50)))).astype(np.float32)
        prob[~prepared.valid] = np.nan
        return prob

    def _write(self, prepared: PreparedTile, out_core: np.ndarray, prob: np.ndarray | None) -> None:
        tile, info = prepared.tile, self.info
        core = tile.core_window(info.height, info.width)
        self.mask.write(out_core, core)
        if self.prob is not None and prob is not None:
            self.prob.write(core_of(tile, prob, info.height, info.width, nearest=False), core)

    def close(self) -> Path:
        """Close the work files; returns the mask's, readable from now on until :meth:`remove_work`."""
        if self.prob is not None:
            self.prob.close()
        return self.mask.close()

    def make_cogs(self) -> list[Path]:
        """Make the COGs from the work files and move them to their final names; returns their paths."""
        paths = [self.mask.make_cog("nearest")]
        if self.prob is not None:
            paths.append(self.prob.make_cog("average"))
        return paths

    def remove_work(self) -> None:
        """Delete the work files (once the outputs are made, or after an error)."""
        self.mask.remove_work()
        if self.prob is not None:
            self.prob.remove_work()


__all__ = ["SinkOptions", "TileSink"]
