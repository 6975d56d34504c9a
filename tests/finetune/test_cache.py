"""The disk embedding cache validates what it reads (issue 21, row 5): a bad entry is a miss, rewritten."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from samgeo_pipeline.finetune.cache import EmbeddingCache
from tests.finetune.test_train import cellula_config, losses, run
from tests.finetune_data import CELLULA
from tests.tiny_sam import save_tiny_sam


@pytest.mark.parametrize(
    "bad",
    [torch.zeros(3), torch.zeros(8, 4, 4), torch.zeros(4, 4, 4, dtype=torch.float64), torch.zeros(8, 4, 5), {"a": 1}],
    ids=["1d", "other-channels", "other-dtype", "other-side", "not-a-tensor"],
)
def test_a_bad_entry_is_a_miss(tmp_path: Path, bad: object) -> None:
    cache = EmbeddingCache("disk", torch.device("cpu"), torch.float32, tmp_path / "cache", "fp", shape=(4, 4, 4))
    cache.put("chip", torch.ones(4, 4, 4))
    assert cache.get("chip") is not None
    torch.save(bad, cache._path("chip"))
    assert cache.get("chip") is None and cache.misses == 1


@pytest.mark.skipif(not CELLULA.is_dir(), reason="../shared/data/cellula_water absent")
def test_fine_tuning_recomputes_and_rewrites_a_poisoned_cache_file(tmp_path: Path) -> None:
    model = save_tiny_sam(tmp_path / "tiny128", image_size=128)
    cache_dir = tmp_path / "cache"
    first = run(cellula_config(model, tmp_path / "first", cache="disk", cache_dir=str(cache_dir)))
    files = sorted(cache_dir.rglob("*.pt"))
    good = torch.load(files[0], weights_only=True)
    assert len(files) > 1 and good.shape == (32, 8, 8)
    torch.save(torch.zeros(3), files[0])
    again = run(cellula_config(model, tmp_path / "again", cache="disk", cache_dir=str(cache_dir)))
    assert again.completed
    np.testing.assert_allclose(losses(again), losses(first), rtol=1e-5, atol=1e-6)
    rewritten = torch.load(files[0], weights_only=True)
    assert rewritten.shape == good.shape and rewritten.dtype == good.dtype
    torch.testing.assert_close(rewritten, good)
    assert not [p for p in files[0].parent.iterdir() if p.suffix != ".pt"]  # no temp file left beside it
