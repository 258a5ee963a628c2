"""argparse value types that refuse what a command cannot use (NaN, negative, absurdly large) with a
usage message instead of a traceback or a silent NaN in the output."""

from __future__ import annotations

import argparse
import math


def _number(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return v


def probability(text: str) -> float:
    """A number from 0 to 1 (a score threshold)."""
    v = _number(text)
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return v


def positive_float(text: str) -> float:
    """A finite number above 0."""
    v = _number(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be above 0")
    return v


def int_range(lo: int, hi: int):
    """A whole number from ``lo`` to ``hi`` (``"2e9"`` or ``"3.5"`` are refused, not rounded)."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"{v} is outside {lo}..{hi}")
        return v

    parse.__name__ = f"whole number {lo}..{hi}"
    return parse


def float_range(lo: float, hi: float):
    """A finite number from ``lo`` to ``hi``."""

    def parse(text: str) -> float:
        v = _number(text)
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"{text} is outside {lo:g}..{hi:g}")
        return v

    parse.__name__ = f"number {lo:g}..{hi:g}"
    return parse
