"""Automatic prompts from a coarse mask: points per component, boxes, negatives, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from samgeo_pipeline.water.prompts import (
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
        for pa, pb in zip(a, b, strict=True):
            np.testing.assert_array_equal(pa.points_xy, pb.points_xy)
        assert any(not np.array_equal(pa.points_xy, pc.points_xy) for pa, pc in zip(a, c, strict=True))

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
        for a, b in zip(with_pool, without, strict=True):
            np.testing.assert_array_equal(a.points_xy, b.points_xy)

    def test_negatives_only_in_sure_land(self, coarse: np.ndarray) -> None:
        land = np.zeros_like(coarse)
        land[:, :15] = True  # confident land: a strip west of the lake
        for seed in range(5):
            lake = prompts(coarse, seed, n_negatives=3, sure_land=land)[0]
            negatives = lake.points_xy[lake.labels == 0].astype(int)
            assert len(negatives) and land[negatives[:, 1], negatives[:, 0]].all()


class TestExact:
    """What a regression would shift by a pixel: windows, clipping, dtypes, counts."""

    def test_box_jitter_is_the_documented_draw_clipped_to_the_tile(self) -> None:
        """Each of x0, y0, x1, y1 moves by one draw of ``rng.integers(-j, j + 1, 4)`` (in that order)
        and is clipped to the tile, on a non-square tile whose component touches every edge."""
        mask = np.zeros((40, 70), bool)
        mask[:, 30] = True  # top to bottom
        mask[20, :] = True  # left to right
        for seed in range(20):
            (p,) = prompts(mask, seed=seed, kind="box", box_jitter=3)
            jitter = np.random.default_rng(seed).integers(-3, 4, size=4)
            expected = np.clip([0 + jitter[0], 0 + jitter[1], 69 + jitter[2], 39 + jitter[3]], 0, [69, 39, 69, 39])
            np.testing.assert_array_equal(p.box_xyxy, expected)
        for corner in ((0, 0), (39, 69)):  # one-pixel components: every clip bound is reached
            single = np.zeros((40, 70), bool)
            single[corner] = True
            for seed in range(20):
                (p,) = prompts(single, seed=seed, kind="box", box_jitter=3)
                jitter = np.random.default_rng(seed).integers(-3, 4, size=4)
                r, c = corner
                np.testing.assert_array_equal(p.box_xyxy, np.clip([c, r, c, r] + jitter, 0, [69, 39, 69, 39]))
        mask = np.zeros((40, 70), bool)
        mask[10:20, 20:50] = True
        boxes = np.array([prompts(mask, seed=s, kind="box", box_jitter=1)[0].box_xyxy for s in range(20)])
        assert set(np.unique(boxes - [20, 10, 49, 19])) == {-1, 0, 1}

    def test_box_prompt_has_empty_typed_points(self) -> None:
        mask = np.zeros((20, 30), bool)
        mask[5:10, 5:10] = True
        (p,) = prompts(mask, kind="box")
        assert p.points_xy.shape == (0, 2) and p.points_xy.dtype == np.float32
        assert p.labels.shape == (0,) and p.labels.dtype == np.int64

    def test_diagonal_pixels_are_one_component(self) -> None:
        mask = np.zeros((30, 30), bool)
        mask[np.arange(20), np.arange(20)] = True
        assert [p.area for p in prompts(mask)] == [20]

    def test_negatives_fill_the_grown_box(self) -> None:
        """Negatives come from the component's box grown by half its size + 8 on each side (clipped
        to the tile), with a fixed erosion of 0 right up to the shore, at least 2 sqrt(count) / n
        apart, as float32 (col, row) with label 0."""
        mask = np.zeros((200, 300), bool)
        mask[40:60, 60:100] = True  # 20 x 40: grown by 18 rows and 28 columns
        (p,) = prompts(mask, n_points=1, n_negatives=2000, erosion=0)
        negatives = p.points_xy[p.labels == 0]
        assert p.labels.dtype == np.int64 and p.points_xy.dtype == np.float32
        cols, rows = negatives.T.astype(int)
        assert (rows.min(), rows.max(), cols.min(), cols.max()) == (22, 77, 32, 127)
        assert not mask[rows, cols].any()
        shore = np.zeros_like(mask)
        shore[39:61, 59:101] = True
        assert (shore & ~mask)[rows, cols].any()  # erosion 0: next to the lake
        count = 56 * 96 - 20 * 40
        for seed in range(5):
            (p,) = prompts(mask, seed=seed, n_points=1, n_negatives=5, erosion=0)
            negatives = p.points_xy[p.labels == 0]
            gaps = np.hypot(*(negatives[:, None, :] - negatives[None, :, :]).transpose(2, 0, 1))
            assert gaps[np.triu_indices(len(negatives), 1)].min() >= 2.0 * np.sqrt(count) / 5  # 27 px

    def test_negatives_window_clipped_at_the_tile_edge(self) -> None:
        mask = np.zeros((60, 80), bool)
        mask[0:10, 0:10] = True
        (p,) = prompts(mask, n_points=1, n_negatives=500, erosion=0)
        cols, rows = p.points_xy[p.labels == 0].T.astype(int)
        assert (rows.min(), rows.max(), cols.min(), cols.max()) == (0, 22, 0, 22)

    def test_dynamic_erosion_keeps_negatives_off_the_shore(self) -> None:
        mask = np.zeros((200, 300), bool)
        mask[40:60, 40:80] = True
        (p,) = prompts(mask, n_points=1, n_negatives=200)  # background 4576 px: depth 3
        cols, rows = p.points_xy[p.labels == 0].T.astype(int)
        assert len(rows) and not ((rows >= 37) & (rows < 63) & (cols >= 37) & (cols < 83)).any()  # 3 px off

    def test_one_negative(self, coarse: np.ndarray) -> None:
        lake = prompts(coarse, n_negatives=1)[0]
        assert (lake.labels == 0).sum() == 1

    def test_no_background_no_negatives(self) -> None:
        (p,) = prompts(np.ones((20, 30), bool), n_negatives=3)
        assert (p.labels == 1).all() and len(p.labels) >= 1 and p.points_xy.shape == (len(p.labels), 2)

    def test_erode_one_step_and_backing_off(self) -> None:
        square = np.zeros((20, 20), bool)
        square[5:15, 5:15] = True
        np.testing.assert_array_equal(erode(square, 1), np.pad(np.ones((8, 8), bool), 6))
        line = np.zeros((20, 40), bool)
        line[9:12, 5:35] = True  # 3 thick: depth 6 and 3 erase it, 1 leaves its centre line
        expected = np.zeros_like(line)
        expected[10, 6:34] = True
        np.testing.assert_array_equal(erode(line, 6), expected)

    def test_sample_points_keeps_picks_at_exactly_the_distance(self) -> None:
        """Picks exactly ``min_distance`` apart are allowed (``>=``): on a 1 x 11 line, distance 2."""
        line = np.ones((1, 11), bool)
        exact = 0
        for seed in range(10):
            points = sample_points(line, 100, 2.0, np.random.default_rng(seed))
            assert points.dtype == np.float32
            xs = np.sort(points[:, 0])
            assert np.diff(xs).min() >= 2
            exact += int((np.diff(xs) == 2).sum())
        assert exact > 0


def test_prompts_for_passes_the_config() -> None:
    from samgeo_pipeline.config import SegmentConfig
    from samgeo_pipeline.water.prompts import prompts_for

    mask = disc((64, 96), (30, 40), 15)
    valid = np.ones(mask.shape, bool)
    sure_water, sure_land = disc((64, 96), (30, 40), 6), ~disc((64, 96), (30, 40), 25)
    for options in ({"points": 4, "negatives": 2, "erosion": 4}, {"prompt": "box", "box_jitter": 2}):
        config = SegmentConfig(model="none").merged(options)
        got = prompts_for(mask, valid, config, np.random.default_rng(5), sure_water, sure_land)
        expected = component_prompts(
            mask, valid, kind=config.prompt, n_points=config.points, n_negatives=config.negatives,
            erosion=config.erosion, box_jitter=config.box_jitter, max_components=config.max_components,
            rng=np.random.default_rng(5), sure_water=sure_water, sure_land=sure_land,
        )
        assert len(got) == len(expected) == 1
        np.testing.assert_array_equal(got[0].points_xy, expected[0].points_xy)
        np.testing.assert_array_equal(got[0].labels, expected[0].labels)
        assert (got[0].box_xyxy is None) == (expected[0].box_xyxy is None)
        if got[0].box_xyxy is not None:
            np.testing.assert_array_equal(got[0].box_xyxy, expected[0].box_xyxy)
    big = np.zeros((64, 96), bool)
    big[:10, :10] = big[20:30, 50:90] = big[50:52, 0:3] = True
    assert len(prompts_for(big, valid, SegmentConfig(model="none", max_components=2), np.random.default_rng(0))) == 2


@pytest.mark.parametrize("kind", ["points", "box"])
def test_components_from_the_coarse_mask_give_the_same_prompts(kind: str) -> None:
    """Components handed over by the coarse mask (dropped ones included in its labels) = labelled anew."""
    from samgeo_pipeline.water.coarse import kept_components

    rng = np.random.default_rng(5)
    candidates = np.zeros((256, 256), bool)
    for _ in range(40):  # discs of a few equal sizes (area ties) and specks min_area drops
        r, c, radius = rng.integers(0, 256), rng.integers(0, 256), rng.choice([1, 6, 6, 12])
        candidates |= disc((256, 256), (r, c), radius)
    water, components = kept_components(candidates, candidates, 30)
    assert components is not None and (components.areas > 0).sum() < len(components.areas) - 1  # some dropped
    valid = np.ones_like(water)
    options = dict(kind=kind, n_points=3, n_negatives=2, erosion=None, box_jitter=3, max_components=50)
    anew = component_prompts(water, valid, rng=np.random.default_rng(1), **options)
    given = component_prompts(water, valid, rng=np.random.default_rng(1), components=components, **options)
    assert len(anew) == len(given) == (components.areas > 0).sum()
    for a, b in zip(anew, given, strict=True):
        assert a.area == b.area
        np.testing.assert_array_equal(a.points_xy, b.points_xy)
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_array_equal(a.box_xyxy if a.box_xyxy is not None else [], b.box_xyxy if b.box_xyxy is not None else [])
