"""One reuse decision per image (:func:`decide_reuse`): reuse a finished run of the same input,
else check that the folder is this input's to write; ``overwrite`` decides neither."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from samgeo_pipeline.config import SegmentConfig
from samgeo_pipeline.errors import OutputConflictError
from samgeo_pipeline.outputs.fingerprint import file_sha256
from samgeo_pipeline.outputs.reuse import Reuse, decide_reuse
from samgeo_pipeline.run.image import RasterRun, segment_raster
from tests.scenes import write_raster

CONFIG = SegmentConfig(model="none", tile_size=64, halo=8, progress=False)


def _scene(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_raster(path, np.random.default_rng(seed).integers(50, 3000, (4, 64, 64)).astype(np.uint16))


def test_decide_reuse(tmp_path: Path) -> None:
    path, out = _scene(tmp_path / "a.tif"), tmp_path / "out"
    checksum = file_sha256(path)
    assert decide_reuse(out, checksum, CONFIG, str(path)) == Reuse(checksum)  # nothing yet: run it
    segment_raster(path, out, CONFIG)
    reuse = decide_reuse(out, checksum, CONFIG, str(path))
    assert reuse.previous is not None and reuse.previous.input.sha256 == checksum
    assert decide_reuse(out, checksum, CONFIG.merged({"overwrite": True}), str(path)).previous is None
    other = _scene(tmp_path / "b" / "a.tif", seed=1)  # same name, other bytes, other source
    with pytest.raises(OutputConflictError, match="holds the outputs of another input"):
        decide_reuse(out, file_sha256(other), CONFIG, str(other))


def test_a_run_given_the_decision_neither_hashes_nor_decides_again(tmp_path: Path, monkeypatch) -> None:
    """The flow's prepare task decides; RasterRun takes its :class:`Reuse` as it is."""
    from samgeo_pipeline.run import image

    path, out = _scene(tmp_path / "a.tif"), tmp_path / "out"
    segment_raster(path, out, CONFIG)
    decided = decide_reuse(out, file_sha256(path), CONFIG, str(path))

    def forbidden(*args, **kwargs):
        raise AssertionError("hashed or decided again")

    monkeypatch.setattr(image, "file_sha256", forbidden)
    monkeypatch.setattr(image, "decide_reuse", forbidden)
    reused = RasterRun(path, out, CONFIG, reuse=decided).prepare()
    assert reused is not None and reused.status == "skipped" and reused.manifest == decided.previous
    run = RasterRun(path, out, CONFIG.merged({"overwrite": True}), reuse=Reuse(decided.checksum))
    assert run.prepare() is None and run.checksum == decided.checksum
    run.abort()
