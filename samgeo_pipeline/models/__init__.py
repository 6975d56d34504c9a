"""The model seam: which Segment Anything family a folder holds, and its predictor.

Every family is used through one interface (:class:`~samgeo_pipeline.models.base.Predictor`:
batched image embeddings, then point / box prompts per tile), with one implementation per family:
SAM (:class:`samgeo_pipeline.sam.predictor.SamPredictor`), SAM-HQ (:mod:`.sam_hq`), SAM 2 / 2.1
(:mod:`.sam2`) and SAM 3 (:mod:`.sam3`: text prompts, ``predict_text``). The family is read from the
folder's ``config.json`` (``model_type``,
:func:`~.families.read_family`) before any weight is loaded; a folder of another family is refused
with one line. This package's ``__init__`` imports the registry only (the implementations import
:mod:`samgeo_pipeline.sam.predictor`, which imports the registry).
"""

from samgeo_pipeline.models.families import FAMILIES, Family, family_named, read_family

__all__ = ["FAMILIES", "Family", "family_named", "read_family"]
