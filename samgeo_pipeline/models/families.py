"""The supported model families and how a folder's family is read (``config.json``'s ``model_type``).

transformers' ``from_pretrained`` of one model class accepts a folder saved from another (a
``Sam2Model`` folder loads as a randomly initialised ``SamModel`` with a warning), so the family
is decided here, from the config, and the folder is loaded with its own class or refused.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from samgeo_pipeline.errors import ConfigError, ModelUnavailableError

if TYPE_CHECKING:
    from transformers import PreTrainedModel


@dataclass(frozen=True)
class Family:
    """One supported family.

    Attributes:
        model_type: ``config.json``'s ``model_type`` of its folders.
        label: the name shown in logs, the manifest and the README.
        model_class: its transformers model class (name in ``transformers``).
        predictor: ``module:Class`` of its predictor (imported on use).
        finetune: whether ``finetune`` can train its mask decoder.
        prompts: the ``--prompt`` kinds its predictor answers (``evaluate`` takes the families
            answering points and boxes).
    """

    model_type: str
    label: str
    model_class: str
    predictor: str
    finetune: bool
    prompts: tuple[str, ...] = ("points", "box")

    def load_class(self) -> type[PreTrainedModel]:
        """The transformers model class."""
        import transformers

        model_class: type[PreTrainedModel] = getattr(transformers, self.model_class)
        return model_class

    def predictor_class(self) -> type:
        """The predictor class (a :class:`~samgeo_pipeline.models.base.Predictor`)."""
        module, name = self.predictor.split(":")
        predictor_class: type = getattr(importlib.import_module(module), name)
        return predictor_class


FAMILIES: dict[str, Family] = {
    f.model_type: f
    for f in (
        Family("sam", "SAM", "SamModel", "samgeo_pipeline.sam.predictor:SamPredictor", finetune=True),
        Family("sam_hq", "SAM-HQ", "SamHQModel", "samgeo_pipeline.models.sam_hq:SamHQPredictor", finetune=False),
        Family("sam2", "SAM 2", "Sam2Model", "samgeo_pipeline.models.sam2:Sam2Predictor", finetune=False),
        Family("sam3", "SAM 3", "Sam3Model", "samgeo_pipeline.models.sam3:Sam3Predictor", finetune=False,
               prompts=("text",)),
    )
}


def family_named(model_type: str) -> Family:
    """The family of ``model_type`` (KeyError when unsupported)."""
    return FAMILIES[model_type]


def read_family(folder: Path) -> Family:
    """The family of a ``save_pretrained`` folder, from its ``config.json``'s ``model_type``.

    Raises:
        ModelUnavailableError: no readable ``config.json``, or a ``model_type`` that is not a
            supported family; one line naming the folder, the type found and the supported ones.
    """
    try:
        config: Any = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise ModelUnavailableError(f"{folder}: unreadable config.json ({type(exc).__name__}); "
                                    "save the model again with save_pretrained") from None  # fmt: skip
    found = config.get("model_type") if isinstance(config, dict) else None
    if isinstance(found, str) and found in FAMILIES:
        return FAMILIES[found]
    supported = ", ".join(f"{f.label} ({f.model_type})" for f in FAMILIES.values())
    raise ModelUnavailableError(
        f"{folder}: model_type {found!r} is not a supported model family (supported: {supported}); "
        "pass a folder of one of these, or --model none for the coarse mask alone"
    )


def check_prompt(prompt: str, family: str, model: str) -> None:
    """Refuse a prompt kind the family does not answer (:attr:`~samgeo_pipeline.models.families.Family.prompts`):
    text needs SAM 3, SAM 3 takes text only.

    Raises:
        ConfigError: one line naming the model and what to pass instead.
    """
    accepted = FAMILIES[family].prompts
    if prompt in accepted:
        return
    label = FAMILIES[family].label
    if prompt == "text":
        raise ConfigError(f"{model}: --prompt text needs a SAM 3 model ({label} takes points or boxes); "
                          "pass --model facebook/sam3 or a saved SAM 3 folder, or --prompt points")  # fmt: skip
    raise ConfigError(f"{model}: {label} takes {' or '.join(accepted)} prompts here, not --prompt {prompt} (transformers' "
                      "Sam3Model takes no points and its boxes are exemplars, not objects); "
                      "pass --prompt text --text water")  # fmt: skip


__all__ = ["Family", "FAMILIES", "family_named", "read_family", "check_prompt"]
