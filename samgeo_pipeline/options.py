"""Options as dataclass fields: their ranges, their help text and their command-line flags.

The mechanisms both configurations (:class:`~samgeo_pipeline.config.SegmentConfig`,
:class:`~samgeo_pipeline.finetune.config.FinetuneConfig`) and both command lines (``segment``,
``finetune`` / ``evaluate``) use, written once: :func:`check_ranges` checks numeric options,
:func:`field_docs` reads each option's help from its attribute docstring, :func:`add_option_flags`
turns fields into flags and :func:`flag_values` reads them back for ``merged``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

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


__all__ = ["Range", "check_ranges", "field_docs", "add_option_flags", "flag_values"]
