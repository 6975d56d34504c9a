"""Options as dataclass fields: their ranges, their help text and their command-line flags.

The mechanisms both configurations (:class:`~samgeo_pipeline.config.SegmentConfig`,
:class:`~samgeo_pipeline.finetune.config.FinetuneConfig`) and both command lines (``segment``,
``finetune`` / ``evaluate``) use, written once: :func:`check_ranges` checks numeric options,
:func:`check_choices` the ``Literal`` ones, :func:`coerce_option` turns a YAML or flag value into
its option's declared type, :func:`field_docs` reads each option's help from its attribute
docstring, :func:`add_option_flags` turns fields into flags and :func:`flag_values` reads them back
for ``merged``. Each reads an option's type from its annotation, the one place it is declared.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import numbers
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast, get_args, get_origin

from samgeo_pipeline.errors import ConfigError


@dataclass(frozen=True)
class Range:
    """The values a numeric option may take: a finite number between ``low`` and ``high``.

    Attributes:
        low, high: bounds (``None``: unbounded on that side).
        low_open, high_open: the bound itself is excluded.
        hint: what the option measures or how to choose it, appended to the error.
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    hint: str = ""

    def text(self) -> str:
        """The rule in words: ``>= 0``, ``> 0``, ``>= 32 and <= 8192``."""
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_open else '<='} {self.high:g}")
        return " and ".join(parts) or "finite"

    def contains(self, value: float) -> bool:
        """True when ``value`` is finite and within the bounds."""
        if not math.isfinite(value):
            return False
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below


def check_ranges(options: object, ranges: Mapping[str, Range]) -> None:
    """The one check of numeric options: each named in ``ranges`` is ``None`` or a finite number in its range.

    Raises:
        ConfigError: one line naming the first bad option, its value and the rule (nan, inf and
            out-of-range values alike).
    """
    for name, rule in ranges.items():
        value = getattr(options, name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ConfigError(f"{name}={value!r}: must be a number {rule.text()}")
        if not rule.contains(cast(float, value)):  # a numbers.Real compares like a float
            finite = "" if math.isfinite(value) else "a finite number "
            hint = f" ({rule.hint})" if rule.hint else ""
            raise ConfigError(f"{name}={value}: must be {finite}{rule.text()}{hint}")




def check_choices(options: object) -> None:
    """The one check of ``Literal`` options: each holds one of its declared values.

    Raises:
        ConfigError: one line naming the first bad option, its value and the choices.
    """
    cls: type = type(options)
    for name, kind in option_types(cls).items():
        allowed = get_args(kind) if get_origin(kind) is Literal else None
        if allowed is not None and getattr(options, name) not in allowed:
            raise ConfigError(f"{name}={getattr(options, name)!r}: choose one of {', '.join(map(str, allowed))}")


def coerce_option(cls: type, name: str, value: Any) -> Any:
    """``value`` (a YAML value or a flag's string) as the declared type of option ``name`` of the
    dataclass ``cls``: ``"2,98"`` -> ``(2.0, 98.0)``, ``"yes"`` -> ``True``, ``"3"`` -> ``3``; an
    optional option (``int | None``) takes its non-``None`` type, a ``Literal`` a string.

    Raises:
        ConfigError: the value does not convert (``1.5`` for an int, ``abc`` for a float).
    """
    try:
        return _converted(option_types(cls)[name], value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ConfigError(f"option {name}={value!r}: {exc}") from None


@functools.cache
def option_types(cls: type) -> dict[str, Any]:
    """Field name -> its declared type with ``None`` left out (``float | None`` -> ``float``)."""
    hints = typing.get_type_hints(cls)
    return {f.name: _without_none(hints[f.name]) for f in dataclasses.fields(cls)}


def _without_none(kind: Any) -> Any:
    members = [k for k in get_args(kind) if k is not type(None)]
    is_union = get_origin(kind) in (typing.Union, types.UnionType)
    return members[0] if is_union and len(members) == 1 else kind


def _converted(kind: Any, value: Any) -> Any:
    if get_origin(kind) is tuple:
        items = value.split(",") if isinstance(value, str) else list(value)
        return tuple(get_args(kind)[0](v) for v in items)
    if kind is bool:
        return value.strip().lower() in {"1", "true", "yes", "on"} if isinstance(value, str) else bool(value)
    if kind is int:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError("must be a whole number")
        return int(value)
    if kind is float:
        return float(value)
    return str(value)  # str and Literal options


def field_docs(cls: type) -> dict[str, str]:
    """Option name -> one-line help, from the attribute docstrings of a config dataclass and its bases
    (a subclass's text wins), for the command lines."""
    import ast
    import inspect
    import textwrap

    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        body = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0].body  # type: ignore[attr-defined]
        for node, nxt in zip(body, body[1:], strict=False):  # each statement and the next
            if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
                docs[node.target.id] = " ".join(str(nxt.value.value).split())  # type: ignore[union-attr]
    return docs


def add_option_flags(parser: argparse.ArgumentParser, defaults: Any, names: Iterable[str] | None = None) -> None:
    """One flag per field of the options dataclass ``defaults`` (all, or those in ``names``), and
    ``--no-progress``.

    ``--tile-size`` for ``tile_size`` (every value ``None`` unless given, so :meth:`merged` keeps the
    lower layers); a boolean that is on by default becomes ``--no-NAME``, one off by default a switch.
    The help is the field's attribute docstring (:func:`field_docs`) and the default of ``defaults``.
    ``progress`` has only ``--no-progress``.
    """
    docs = field_docs(type(defaults))
    wanted = None if names is None else set(names)
    for f in dataclasses.fields(defaults):
        if f.name == "progress" or (wanted is not None and f.name not in wanted):
            continue
        flag = f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        help_text = f"{docs.get(f.name, '')} (default: {shown})".replace("%", "%%")
        if default is True:  # on by default: the flag turns it off
            parser.add_argument(f"--no-{flag}", dest=f.name, action="store_const", const=False, default=None,
                                help=help_text)  # fmt: skip
        elif isinstance(default, bool):
            parser.add_argument(f"--{flag}", action="store_true", default=None, help=help_text)
        else:
            parser.add_argument(f"--{flag}", default=None, metavar=f.name.upper(), help=help_text)
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def flag_values(args: argparse.Namespace, names: Iterable[str]) -> dict[str, Any]:
    """The values of the flags :func:`add_option_flags` added for ``names`` (``None``: not given),
    ``progress`` False with ``--no-progress``: the top layer for ``merged``."""
    values = {name: getattr(args, name) for name in names if name != "progress" and hasattr(args, name)}
    if getattr(args, "no_progress", False):
        values["progress"] = False
    return values


__all__ = ["Range", "check_ranges", "check_choices", "coerce_option", "option_types", "field_docs", "add_option_flags",
           "flag_values"]
