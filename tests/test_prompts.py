"""Automatic prompts from a coarse mask: points per component, boxes, negatives, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from samgeo_pipeline.prompts import (
    ComponentPrompt,
    component_prompts,
    erode,
    erosion_iterations,
    sample_points,
)
from tests.scenes import disc


@pytest.fixture
def coarse() -> np.ndarray:
    """128x128: a big lake (r=30), a 20x6 river piece, a 4x4 pond."""
    mask = disc((128, 128), (50, 50), 30)
    mask[100:106, 60:80] = True
    mask[10:14, 110:114] = True
    return mask


def prompts(coarse: np.ndarray, seed: int = 0, **options: object) -> list[ComponentPrompt]:
    kw: dict[str, object] = dict(
        kind="points", n_points=3, n_negatives=0, erosion=None, box_jitter=0, max_components=8
    )
    kw.update(options)
    return component_prompts(coarse, np.ones(coarse.shape, bool), rng=np.random.default_rng(seed), **kw)  # type: ignore[arg-type]


class TestPoints:
    def test_one_prompt_per_component_largest_first(self, coarse: np.ndarray) -> None:
        result = prompts(coarse)
        assert [p.area for p in result] == [int(disc((128, 128), (50, 50), 30).sum()), 120, 16]
        assert all(p.box_xyxy is None for p in result)

    def test_points_inside_their_component(self, coarse: np.ndarray) -> None:
        for p in prompts(coarse):
            # Up to 3: the seed's distance d = 2.75 sqrt(area) / n may leave room for fewer.
            assert p.points_xy.dtype == np.float32 and p.points_xy.shape[1] == 2
            assert 1 <= len(p.points_xy) <= 3
            assert p.labels.dtype == np.int64 and (p.labels == 1).all()
            cols, rows = p.points_xy[:, 0].astype(int), p.points_xy[:, 1].astype(int)
            assert coarse[rows, cols].all()

    def test_points_spread_by_dynamic_distance(self) -> None:
        river = np.zeros((64, 256), bool)
        river[28:36, 8:248] = True  # long and thin: room for all three points
        for seed in range(5):
            (p,) = prompts(river, seed=seed)
            assert len(p.points_xy) == 3
            d = 2.75 * np.sqrt(p.area) / 3
            xy = p.points_xy
            gaps = [np.hypot(*(xy[i] - xy[j])) for i in range(3) for j in range(i + 1, 3)]
            assert min(gaps) >= d

    def test_points_avoid_the_shore(self, coarse: np.ndarray) -> None:
        lake = prompts(coarse)[0]
        depth = erosion_iterations(lake.area, 35)
        assert depth >= 2
        # Each point lies at least `depth` pixels inside the lake (3x3 erosion = chessboard distance).
        for x, y in lake.points_xy:
            assert np.hypot(y + 0.5 - 50, x + 0.5 - 50) <= 30 - depth + 0.5

    def test_max_components(self, coarse: np.ndarray) -> None:
        result = prompts(coarse, max_components=2)
        assert [p.area for p in result][1:] == [120]

    def test_deterministic_for_a_seed(self, coarse: np.ndarray) -> None:
        a, b, c = prompts(coarse, seed=7), prompts(coarse, seed=7), prompts(coarse, seed=8)
        for pa, pb in zip(a, b):
            np.testing.assert_array_equal(pa.points_xy, pb.points_xy)
        assert any(not np.array_equal(pa.points_xy, pc.points_xy) for pa, pc in zip(a, c))

    def test_negatives(self, coarse: np.ndarray) -> None:
        result = prompts(coarse, n_negatives=2)
        lake = result[0]
        k = int((lake.labels == 1).sum())
        assert k >= 1 and list(lake.labels) == [1] * k + [0, 0]
        cols, rows = lake.points_xy[:, 0].astype(int), lake.points_xy[:, 1].astype(int)
        assert coarse[rows[:k], cols[:k]].all() and not coarse[rows[k:], cols[k:]].any()

    def test_negatives_only_on_valid_pixels(self) -> None:
        mask = np.zeros((64, 64), bool)
        mask[20:40, 20:40] = True
        valid = np.zeros((64, 64), bool)
        valid[:, 32:] = True
        result = component_prompts(
            mask, valid, kind="points", n_points=1, n_negatives=4, erosion=0, box_jitter=0,
            max_components=1, rng=np.random.default_rng(0),
        )
        negatives = result[0].points_xy[result[0].labels == 0]
        assert len(negatives) > 0
        assert valid[negatives[:, 1].astype(int), negatives[:, 0].astype(int)].all()

    def test_fixed_erosion_on_a_thin_component(self) -> None:
        # A 2-pixel-wide river vanishes under 5 erosions: points still come (erosion backs off).
        mask = np.zeros((40, 80), bool)
        mask[20:22, 5:75] = True
        result = prompts(mask, erosion=5)
        assert len(result) == 1 and len(result[0].points_xy) >= 1
        cols, rows = result[0].points_xy[:, 0].astype(int), result[0].points_xy[:, 1].astype(int)
        assert mask[rows, cols].all()

    def test_empty_mask(self) -> None:
        assert prompts(np.zeros((32, 32), bool)) == []


class TestBox:
    def test_tight_box_xyxy(self, coarse: np.ndarray) -> None:
        result = prompts(coarse, kind="box")
        river = result[1]
        np.testing.assert_array_equal(river.box_xyxy, [60, 100, 79, 105])
        assert river.box_xyxy.dtype == np.float32
        assert len(river.points_xy) == 0 and len(river.labels) == 0

    def test_jitter_bounded_and_clipped(self, coarse: np.ndarray) -> None:
        for seed in range(10):
            pond = prompts(coarse, seed=seed, kind="box", box_jitter=10)[2]
            x0, y0, x1, y1 = pond.box_xyxy
            assert 110 - 10 <= x0 <= 110 + 10 and 0 <= y0 <= 10 + 10
            assert 113 - 10 <= x1 <= 127 and 13 - 10 <= y1 <= 13 + 10


class TestHelpers:
    def test_erosion_iterations(self) -> None:
        assert erosion_iterations(10_000, 35) == int(10_000**0.6 / 35) == 7
        assert erosion_iterations(100, 35) == 0

    def test_erode(self) -> None:
        square = np.zeros((20, 20), bool)
        square[5:15, 5:15] = True
        assert erode(square, 2).sum() == 36
        assert erode(square, 0) is square
        assert erode(square, 50).any()  # backs off instead of erasing

    def test_sample_points(self) -> None:
        candidates = np.ones((50, 50), bool)
        points = sample_points(candidates, 5, 10.0, np.random.default_rng(1))
        assert points.shape == (5, 2)
        dist = np.hypot(*(points[:, None, :] - points[None, :, :]).transpose(2, 0, 1))
        assert dist[np.triu_indices(5, 1)].min() >= 10.0

    def test_sample_points_runs_out(self) -> None:
        candidates = np.zeros((10, 10), bool)
        candidates[5, 5] = True
        assert sample_points(candidates, 3, 1.0, np.random.default_rng(0)).shape == (1, 2)
        assert sample_points(np.zeros((4, 4), bool), 3, 1.0, np.random.default_rng(0)).shape == (0, 2)


class TestPools:
    """Points drawn from the coarse mask's confident parts (CoarseMask.sure_water / sure_land)."""

    def test_positives_only_in_sure_water(self, coarse: np.ndarray) -> None:
        sure = np.zeros_like(coarse)
        sure[40:60, 40:60] = True  # the lake's centre only
        for seed in range(5):
            lake = prompts(coarse, seed, sure_water=sure)[0]
            cols, rows = lake.points_xy.T.astype(int)
            assert sure[rows, cols].all()

    def test_fallback_to_the_component_when_the_pool_misses_it(self, coarse: np.ndarray) -> None:
        sure = np.zeros_like(coarse)  # no sure water anywhere: sample as without a pool
        with_pool = prompts(coarse, 3, sure_water=sure)
        without = prompts(coarse, 3)
        for a, b in zip(with_pool, without):
            np.testing.assert_array_equal(a.points_xy, b.points_xy)

    def test_negatives_only_in_sure_land(self, coarse: np.ndarray) -> None:
        land = np.zeros_like(coarse)
        land[:, :15] = True  # confident land: a strip west of the lake
        for seed in range(5):
            lake = prompts(coarse, seed, n_negatives=3, sure_land=land)[0]
            negatives = lake.points_xy[lake.labels == 0].astype(int)
            assert len(negatives) and land[negatives[:, 1], negatives[:, 0]].all()
