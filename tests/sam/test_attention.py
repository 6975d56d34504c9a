"""The memory-saving global attention gives the encoder's dense results (samgeo_pipeline/sam/attention.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samgeo_pipeline.sam.attention import chunk_global_attention
from samgeo_pipeline.sam.predictor import SamPredictor
from tests.tiny_sam import tiny_sam


@pytest.mark.parametrize("rows", [1, 3, 16])
def test_chunked_equals_dense(rows):
    tiles = np.random.default_rng(0).integers(0, 256, (2, 256, 200, 3), dtype=np.uint8)
    dense, _ = SamPredictor(tiny_sam(256), torch.device("cpu")).embed(tiles)
    model = tiny_sam(256)
    assert chunk_global_attention(model, rows) == 1  # the one global layer; windowed layers untouched
    chunked, _ = SamPredictor(model, torch.device("cpu")).embed(tiles)
    torch.testing.assert_close(chunked, dense, rtol=1e-4, atol=1e-4)
    assert float((chunked - dense).abs().max()) < 1e-4 * float(dense.abs().max()) + 1e-5


def test_predictor_option_and_bad_value():
    predictor = SamPredictor(tiny_sam(256), torch.device("cpu"), attention_rows=4)
    assert all(getattr(m, "rows_per_chunk", 4) == 4 for m in predictor.model.modules())
    assert sum(hasattr(m, "rows_per_chunk") for m in predictor.model.modules()) == 1
    with pytest.raises(ValueError, match="rows_per_chunk"):
        chunk_global_attention(tiny_sam(256), 0)


def test_segment_option_reaches_the_predictor(tmp_path):
    """``--attention-rows`` (SegmentConfig.attention_rows) chunks the loaded model; 0 keeps it dense;
    it is a runtime option (same parameter hash, so outputs are reused across it)."""
    from samgeo_pipeline.config import SegmentConfig
    from samgeo_pipeline.run.batch import load_predictor
    from tests.tiny_sam import save_tiny_sam

    model_dir = save_tiny_sam(tmp_path / "sam")
    chunked, _ = load_predictor(SegmentConfig(model=str(model_dir), device="cpu", attention_rows=8))
    dense, _ = load_predictor(SegmentConfig(model=str(model_dir), device="cpu"))
    assert chunked.attention_rows == 8 and dense.attention_rows is None
    assert sum(hasattr(m, "rows_per_chunk") for m in chunked.model.modules()) == 1
    assert not any(hasattr(m, "rows_per_chunk") for m in dense.model.modules())
    assert SegmentConfig(attention_rows=8).params_hash() == SegmentConfig().params_hash()
    with pytest.raises(Exception, match="attention_rows"):
        SegmentConfig(attention_rows=-1)
