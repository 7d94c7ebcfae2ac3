"""Type and range checks of the environment's keywords, one place for every option.

A keyword of the wrong type is refused, never coerced: ``True`` is not the
integer 1 (``top=True`` would silently mean one pair), ``1.5`` is not an hour
count, ``"no"`` is not False. Each check raises
:class:`~gnn_market.errors.OptionError` (also a ``ValueError``) with one line
naming the keyword, what it must be, and the type and value it got. NumPy
integers, floats and bools count as their Python kinds.
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from gnn_market.errors import OptionError


def shown(value: Any) -> str:
    """``"float 1.5"``: the type and the value, so that ``"1"`` and ``1`` read differently."""
    return f"{type(value).__name__} {value!r}"


def is_bool(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_))


def is_int(value: Any) -> bool:
    """An int or a NumPy integer, never a bool."""
    return isinstance(value, (int, np.integer)) and not is_bool(value)


def is_real(value: Any) -> bool:
    """A finite int or float (NumPy's too), never a bool."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not is_bool(value) and math.isfinite(value)


def check_int(name: str, value: Any, minimum: int = 1, optional: bool = False, unit: str = "") -> None:
    """``value`` is an integer ``>= minimum`` (or None when ``optional``)."""
    if optional and value is None:
        return
    if not (is_int(value) and value >= minimum):
        alt = " or None" if optional else ""
        raise OptionError(f"{name} must be an integer >= {minimum}{alt}{unit}, got {shown(value)}")


def check_bool(name: str, value: Any) -> None:
    """``value`` is True or False (a string such as ``"no"`` would count as true)."""
    if not is_bool(value):
        raise OptionError(f"{name} must be True or False, got {shown(value)}")


def check_real(name: str, value: Any, within: Callable[[float], bool], where: str) -> None:
    """``value`` is a finite number for which ``within(value)`` holds; ``where`` says the range (``"> 0"``)."""
    if not (is_real(value) and within(value)):
        raise OptionError(f"{name} must be a number {where}, got {shown(value)}")


def check_choice(name: str, value: Any, choices: Sequence[str], optional: str | None = None) -> None:
    """``value`` is one of ``choices`` (or None when ``optional`` says what None means)."""
    if optional is not None and value is None:
        return
    if not (isinstance(value, str) and value in choices):
        alt = "" if optional is None else f" (or None: {optional})"
        raise OptionError(f"{name} must be one of {', '.join(map(repr, choices))}{alt}, got {shown(value)}")


def check_path(name: str, value: Any) -> None:
    """``value`` is a path (``str`` or ``os.PathLike``) or None."""
    if value is not None and not isinstance(value, (str, os.PathLike)):
        raise OptionError(f"{name} must be a folder path (str or os.PathLike) or None, got {shown(value)}")
