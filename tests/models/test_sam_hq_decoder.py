"""SAM-HQ's decoder as the authors compute it (:mod:`samgeo_pipeline.models.sam_hq_decoder`).

The parity with the authors' package itself is in ``tests/models/test_sam_hq.py``.
"""

from __future__ import annotations

import torch

from tests.tiny_sam import tiny_sam


def test_sam_hq_decoder_uses_the_transformers_output() -> None:
    """Without the authors' package (their parity: tests/models/test_sam_hq.py): SAM-HQ's masks are
    built from the two-way transformer's updated image tokens, which transformers 5.24's SamHQ
    decoder drops (it reads the image embedding from before the transformer)."""
    from samgeo_pipeline.models.sam_hq_decoder import use_reference_decoder

    hq = tiny_sam(256, 0, "sam_hq")
    use_reference_decoder(hq)
    pixels = torch.randn(2, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    embeddings, intermediate = hq.get_image_embeddings(pixels)
    prompts = {"input_points": torch.tensor([[[[40.0, 60.0], [200.0, 90.0]]]] * 2), "input_labels": torch.tensor([[[1, 0]]] * 2)}

    def masks() -> torch.Tensor:
        with torch.no_grad():
            out = hq(image_embeddings=embeddings, intermediate_embeddings=intermediate, multimask_output=False, **prompts)
        return out.pred_masks

    before = masks()
    transformer = hq.mask_decoder.transformer
    original = transformer.forward
    transformer.forward = lambda **kwargs: (lambda q, k: (q, 0.5 * k))(*original(**kwargs))  # damp the image tokens
    assert before.shape == (2, 1, 1, 64, 64)
    assert not torch.allclose(masks(), before, atol=1e-3)
