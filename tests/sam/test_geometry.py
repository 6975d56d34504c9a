"""SAM's geometry (:mod:`samgeo_pipeline.sam.geometry`): resize, prompt scaling and mask upsampling equal Meta's
``segment_anything`` and transformers' ``SamImageProcessor`` for tiles smaller, larger and non-square relative
to the model's input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import SamImageProcessor

from samgeo_pipeline.sam.geometry import resize_tile, resized_shape, scale_coords, upsample_masks
from samgeo_pipeline.sam.predictor import preprocess_torch
from tests.sam.test_pixels import IMAGE_SIZE, SHAPES


class TestGeometry:
    @pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
    def test_matches_segment_anything(self, shape):
        """resize (uint8 pixels), point and box scaling, mask upsampling: exactly the reference's."""
        from tests.sam_reference import import_segment_anything

        try:
            import_segment_anything()
        except ImportError as exc:
            pytest.skip(str(exc))
        from segment_anything.modeling import Sam
        from segment_anything.utils.transforms import ResizeLongestSide

        rng = np.random.default_rng(shape[0] * 1000 + shape[1])
        tile = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
        reference = ResizeLongestSide(IMAGE_SIZE)
        resized = resized_shape(shape, IMAGE_SIZE)
        np.testing.assert_array_equal(resize_tile(tile, IMAGE_SIZE), reference.apply_image(tile))
        coords = rng.uniform(0, min(shape), (5, 2))
        np.testing.assert_array_equal(scale_coords(coords, shape, resized),
                                      reference.apply_coords(coords, shape).astype(np.float32))  # fmt: skip
        boxes = rng.uniform(0, min(shape), (3, 4))
        np.testing.assert_array_equal(scale_coords(boxes.reshape(-1, 2, 2), shape, resized).reshape(-1, 4),
                                      reference.apply_boxes(boxes, shape).astype(np.float32))  # fmt: skip
        low_res = torch.randn(1, 3, IMAGE_SIZE // 4, IMAGE_SIZE // 4, generator=torch.Generator().manual_seed(0))
        stub = type("Stub", (), {"image_encoder": type("Encoder", (), {"img_size": IMAGE_SIZE})()})()
        expected = Sam.postprocess_masks(stub, low_res, resized, shape)[0]
        # Same operations; float sums may differ in the last bit with the thread count (OMP_NUM_THREADS).
        torch.testing.assert_close(upsample_masks(low_res[0], shape, resized, IMAGE_SIZE), expected, rtol=0, atol=1e-6)

    @pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
    def test_pixel_values_match_sam_processor(self, shape):
        """transformers' SamImageProcessor (PIL resize of the uint8 tile): the same pixel values."""
        tiles = np.random.default_rng(shape[0]).integers(0, 256, (2, *shape, 3), dtype=np.uint8)
        processor = SamImageProcessor(size={"longest_edge": IMAGE_SIZE},
                                      pad_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})  # fmt: skip
        expected = processor(images=list(tiles), return_tensors="pt")
        ours, resized = preprocess_torch(torch.from_numpy(tiles), IMAGE_SIZE)
        assert list(resized) == expected["reshaped_input_sizes"][0].tolist()
        torch.testing.assert_close(ours, expected["pixel_values"], rtol=0, atol=1e-5)


def test_resized_shape_rounds_half_up() -> None:
    assert resized_shape((1024, 1024), 1024) == (1024, 1024)
    assert resized_shape((100, 200), 1024) == (512, 1024)
    assert resized_shape((300, 1000), 1024) == (307, 1024)  # 307.2
    assert resized_shape((1000, 5), 1024) == (1024, 5)  # 5.12
    assert resized_shape((2048, 5), 1024) == (1024, 3)  # 2.5: half up, not to even


def test_normalize_and_pad_pads_bottom_right_with_zeros() -> None:
    from samgeo_pipeline.sam.geometry import IMAGENET_MEAN, IMAGENET_STD, normalize_and_pad

    tiles = torch.full((2, 3, 5, 3), 255, dtype=torch.uint8)
    pixels = normalize_and_pad(tiles, 8)
    assert pixels.shape == (2, 3, 8, 8) and pixels.dtype == torch.float32
    expected = [(1.0 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)]
    torch.testing.assert_close(pixels[0, :, 0, 0], torch.tensor(expected), rtol=0, atol=1e-5)
    assert (pixels[:, :, 3:, :] == 0).all() and (pixels[:, :, :, 5:] == 0).all()


def test_square_pixels_stretch_to_the_square() -> None:
    from samgeo_pipeline.sam.geometry import square_pixels

    tiles = torch.zeros((1, 4, 8, 3), dtype=torch.uint8)
    tiles[:, :, 4:] = 255  # right half white
    pixels = square_pixels(tiles, 16, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    assert pixels.shape == (1, 3, 16, 16)
    torch.testing.assert_close(pixels[0, :, :, 0], torch.full((3, 16), -1.0))
    torch.testing.assert_close(pixels[0, :, :, -1], torch.full((3, 16), 1.0))
