"""The one predictor interface (:mod:`samgeo_pipeline.models.base`): every family's predictor offers it as declared,
SAM 3 the text part too. The families' behaviour is in ``tests/models/test_families.py``."""

from __future__ import annotations

import importlib
import inspect

import pytest

from samgeo_pipeline.models.base import Predictor, TextPredictor
from samgeo_pipeline.models.families import FAMILIES


def predictor_class(family: str) -> type:
    module, _, name = FAMILIES[family].predictor.partition(":")
    return getattr(importlib.import_module(module), name)


def methods(protocol: type) -> list[str]:
    return [n for n, v in vars(protocol).items() if inspect.isfunction(v) and not n.startswith("_")]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_each_family_offers_the_interface_as_declared(family: str) -> None:
    cls = predictor_class(family)
    assert cls.family == family
    protocols = [Predictor, TextPredictor] if "text" in FAMILIES[family].prompts else [Predictor]
    for protocol in protocols:
        for name in methods(protocol):
            declared = list(inspect.signature(getattr(protocol, name)).parameters)
            offered = list(inspect.signature(getattr(cls, name)).parameters)
            assert offered[: len(declared)] == declared, (family, name)
    assert methods(Predictor) == ["embed", "predict_masks", "predict_logits"] and methods(TextPredictor) == ["predict_text"]
