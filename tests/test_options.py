"""options.py: ranges, choices, value conversion, help and the one flag generator of both configs' command lines."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Literal

import pytest

from samgeo_pipeline.config import SegmentConfig
from samgeo_pipeline.errors import ConfigError
from samgeo_pipeline.finetune.config import FinetuneConfig
from samgeo_pipeline.options import add_option_flags, check_choices, coerce_option, field_docs, flag_values


def parser_for(defaults: object, names: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_option_flags(parser, defaults, names)
    return parser


def test_flags_follow_the_fields_and_their_defaults() -> None:
    parser = parser_for(SegmentConfig())
    args = parser.parse_args(["--tile-size", "512", "--no-zero-collar", "--probability", "--no-progress"])
    values = flag_values(args, ["tile_size", "zero_collar", "probability", "halo", "progress"])
    assert values == {"tile_size": "512", "zero_collar": False, "probability": True, "halo": None, "progress": False}
    merged = SegmentConfig().merged(values)
    assert (merged.tile_size, merged.zero_collar, merged.probability, merged.progress) == (512, False, True, False)
    assert merged.halo == SegmentConfig().halo  # None: not given, the lower layer stays
    with pytest.raises(SystemExit):
        parser.parse_args(["--zero-collar"])  # on by default: only --no-zero-collar exists
    with pytest.raises(SystemExit):
        parser.parse_args(["--progress"])


def test_help_is_the_attribute_docstring_and_the_default() -> None:
    parser = parser_for(FinetuneConfig(), ["epochs", "percentiles"])
    text = parser.format_help()
    assert " ".join(field_docs(FinetuneConfig)["epochs"].split()[:3]) in " ".join(text.split())
    assert "(default: 2.0,98.0)" in " ".join(text.split())
    assert "--lr" not in text  # only the names asked for


@pytest.mark.parametrize(("config", "noun"), [(SegmentConfig(), "option"), (FinetuneConfig(), "finetune option")])
def test_one_merge_for_both_configs(config: SegmentConfig | FinetuneConfig, noun: str) -> None:
    merged = config.merged({"tile-size": "2048", "halo": None, "gsd": "2.5"})
    assert (merged.tile_size, merged.halo, merged.gsd) == (2048, config.halo, 2.5)
    assert type(merged) is type(config)
    with pytest.raises(ConfigError, match=f"^unknown {noun} 'nope'; known: "):
        config.merged({"nope": 1})
    with pytest.raises(ConfigError, match=r"option tile_size='x'"):
        config.merged({"tile_size": "x"})


def test_finetune_optional_options_take_their_type() -> None:
    merged = FinetuneConfig().merged({"max_images": "3", "stop_after_epoch": 2.0, "labels": 5})
    assert (merged.max_images, merged.stop_after_epoch, merged.labels) == (3, 2, "5")
    with pytest.raises(ConfigError, match=r"option max_images=1.5: must be a whole number"):
        FinetuneConfig().merged({"max_images": 1.5})


@dataclass(frozen=True)
class Declared:
    """Options whose type is only in the annotation: a float option with an int default among them."""

    share: float = 0
    count: int | None = None
    pair: tuple[float, float] = (1.0, 2.0)
    kind: Literal["a", "b"] = "a"
    on: bool = False
    name: str = ""


def test_values_take_the_declared_type_not_the_defaults() -> None:
    assert coerce_option(Declared, "share", "0.25") == 0.25  # the default 0 is an int: its type would refuse
    assert coerce_option(Declared, "count", "3") == 3 and coerce_option(Declared, "count", 4.0) == 4
    assert coerce_option(Declared, "pair", "2,98") == (2.0, 98.0)
    assert coerce_option(Declared, "on", "yes") is True and coerce_option(Declared, "on", "off") is False
    assert coerce_option(Declared, "kind", "b") == "b" and coerce_option(Declared, "name", 7) == "7"
    for name, value in (("count", 1.5), ("count", "x"), ("share", "abc"), ("pair", "1,x")):
        with pytest.raises(ConfigError, match=f"option {name}="):
            coerce_option(Declared, name, value)


def test_every_literal_option_is_checked() -> None:
    check_choices(Declared(kind="b"))
    with pytest.raises(ConfigError, match="kind='c': choose one of a, b"):
        check_choices(Declared(kind="c"))  # type: ignore[arg-type]
    for config, option in ((SegmentConfig, "text_combine"), (SegmentConfig, "index"), (FinetuneConfig, "loss")):
        with pytest.raises(ConfigError, match=f"{option}='nope': choose one of"):
            config(**{option: "nope"})
