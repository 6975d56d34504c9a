"""SAM 3 text prompts in the tiled pipeline (:mod:`samgeo_pipeline.run.text_prompts`): the combination modes
of SAM 3's instances with the coarse mask, and which tiles go to the model (the pipeline runs with a tiny SAM 3
are in ``tests/models/test_sam3.py``)."""

from __future__ import annotations

import numpy as np
import pytest

from samgeo_pipeline.config import SegmentConfig
from samgeo_pipeline.models.sam3 import TextOptions
from samgeo_pipeline.run.prepare import PreparedTile
from samgeo_pipeline.run.text_prompts import combine_instances, missed_components, text_water, tile_needs_model
from tests.scenes import options_only


class TestCombine:
    """The modes on a controlled tile: coarse components A (touched by instance 1) and B (touched by
    none); instance 2 lies on land."""

    coarse = np.zeros((20, 30), bool)
    coarse[2:6, 2:6] = True  # A
    coarse[12:16, 20:26] = True  # B
    instances = np.zeros((2, 20, 30), bool)
    instances[0, 4:9, 4:9] = True  # overlaps A
    instances[1, 14:18, 8:12] = True  # land only

    @pytest.mark.parametrize(
        ("combine", "parts"),
        [("none", ["i1", "i2"]), ("skip-dry", ["i1", "i2"]), ("agree", ["i1"]), ("add", ["i1", "i2", "B"])],
    )
    def test_each_mode_on_a_controlled_tile(self, combine: str, parts: list[str]) -> None:
        named = {"i1": self.instances[0], "i2": self.instances[1], "B": self.coarse & (np.arange(30) >= 15)}
        expected = np.any([named[p] for p in parts], axis=0)
        np.testing.assert_array_equal(combine_instances(self.instances, self.coarse, combine), expected)

    @pytest.mark.parametrize("combine", ["none", "skip-dry", "agree", "add"])
    def test_no_instance(self, combine: str) -> None:
        water = combine_instances(np.zeros((0, 20, 30), bool), self.coarse, combine)
        np.testing.assert_array_equal(water, self.coarse if combine == "add" else np.zeros_like(self.coarse))

    @pytest.mark.parametrize(("combine", "runs"), [("none", True), ("add", True), ("agree", False), ("skip-dry", False)])
    def test_which_dry_tiles_run_the_model(self, combine: str, runs: bool) -> None:
        dry = PreparedTile(None, None, np.ones((4, 4), bool), np.zeros((4, 4), bool), [])  # type: ignore[arg-type]
        assert tile_needs_model(dry, combine) is runs


    def test_text_water_reads_only_its_options(self) -> None:
        asked, instances = [], self.instances

        class Predictor:
            def predict_text(self, embeddings, phrases, threshold, tile_shape):
                asked.append((phrases, threshold, tile_shape))
                return [instances for _ in embeddings]

        config = SegmentConfig(model="facebook/sam3", prompt="text", text="water,lake", text_threshold=0.4, text_combine="add")
        tile = PreparedTile(None, None, np.ones(self.coarse.shape, bool), self.coarse, [])  # type: ignore[arg-type]
        water = text_water(Predictor(), [0, 1], [tile, tile], options_only(config, TextOptions))  # type: ignore[arg-type]
        assert asked == [(("water", "lake"), 0.4, (20, 30))]
        for got in water:
            np.testing.assert_array_equal(got, combine_instances(self.instances, self.coarse, "add"))


def test_missed_components_are_8_connected_and_untouched() -> None:
    coarse = np.zeros((10, 10), bool)
    coarse[1, 1] = coarse[2, 2] = True  # one component: diagonal neighbours
    coarse[6:9, 6:9] = True
    water = np.zeros_like(coarse)
    water[2, 2] = True  # touches the diagonal pair only
    missed = missed_components(coarse, water)
    np.testing.assert_array_equal(missed, coarse & (np.arange(10) >= 5)[:, None])
    assert not missed_components(coarse, coarse).any()
    np.testing.assert_array_equal(missed_components(coarse, np.zeros_like(coarse)), coarse)
