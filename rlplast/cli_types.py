"""Parsing of command-line values shared by the commands: seed lists and step counts.

``parse_seeds("0-3,7") == [0, 1, 2, 3, 7]``, ``parse_steps("2M") == 2_000_000``; the click
parameter types ``SEEDS`` and ``STEPS`` wrap them so a bad value is a usage error that names
the option.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import click

_SUFFIXES = {"": 1, "k": 1_000, "m": 1_000_000, "g": 1_000_000_000, "b": 1_000_000_000}
_STEPS_RE = re.compile(r"^\s*(\d+(?:\.\d*)?(?:e\d+)?)\s*([kmgb]?)\s*$", re.IGNORECASE)
_RANGE_RE = re.compile(r"^(\d+)-(\d+)$")
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def parse_seeds(text: str) -> list[int]:
    """Seeds from ``"0-29"``, ``"0,3,5"`` or a mix (``"0-3,10"``); order kept, no duplicates.

    Raises:
        ValueError: empty parts, non-integers, descending ranges (``"5-2"``) or repeated seeds.
    """
    seeds: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if match := _RANGE_RE.match(part):
            lo, hi = int(match[1]), int(match[2])
            if lo > hi:
                raise ValueError(f"seed range {part!r} is descending; write it as {hi}-{lo}")
            seeds.extend(range(lo, hi + 1))
        elif part.isdigit():
            seeds.append(int(part))
        else:
            raise ValueError(
                f"bad seed {part!r} in {text!r}: expected non-negative integers and ranges like '0-29' or '0,3,5'"
            )
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise ValueError(f"seeds {text!r} repeat {repeated}")
    return seeds


def format_seeds(seeds: Sequence[int]) -> str:
    """The compact form of a seed list: ``[0, 1, 2, 3, 7] -> "0-3,7"`` (inverse of :func:`parse_seeds`)."""
    parts: list[str] = []
    i = 0
    seeds = list(seeds)
    while i < len(seeds):
        j = i
        while j + 1 < len(seeds) and seeds[j + 1] == seeds[j] + 1:
            j += 1
        parts.append(str(seeds[i]) if j == i else f"{seeds[i]}-{seeds[j]}")
        i = j + 1
    return ",".join(parts)


def parse_steps(text: str | int) -> int:
    """A positive step count from ``"50M"``, ``"2e6"``, ``"300k"``, ``"1.5M"`` or ``"2048"``.

    Raises:
        ValueError: not a number with an optional k/M/G suffix, not a whole number, or not positive.
    """
    if isinstance(text, int):
        value: float = text
    else:
        match = _STEPS_RE.match(str(text).replace("_", ""))
        if not match:
            raise ValueError(f"bad step count {text!r}: expected e.g. 2048, 300k, 2M, 2e6, 1.5M")
        value = float(match[1]) * _SUFFIXES[match[2].lower()]
    if value != int(value):
        raise ValueError(f"step count {text!r} is not a whole number of steps ({value})")
    if value <= 0:
        raise ValueError(f"step count {text!r} must be positive")
    return int(value)


def parse_device(text: str) -> str:
    """A torch device the commands accept: ``auto``, ``cpu``, ``cuda`` or ``cuda:<index>``.

    Raises:
        ValueError: anything else (torch's own message lists two dozen device types).
    """
    text = str(text).strip()
    if not _DEVICE_RE.match(text):
        raise ValueError(f"bad device {text!r}: expected auto, cpu, cuda or cuda:<index> such as cuda:1")
    return text


def format_steps(steps: int) -> str:
    """Short human form: ``2_000_000 -> "2M"``, ``300_000 -> "300k"``, ``1234 -> "1234"``."""
    for suffix, scale in (("G", 1_000_000_000), ("M", 1_000_000), ("k", 1_000)):
        if steps >= scale and steps % (scale // 10) == 0:
            return f"{steps / scale:g}{suffix}"
    return str(steps)


class _Parsed(click.ParamType):
    """A click type from a parse function; its ValueError becomes a usage error."""

    def __init__(self, name: str, parse):
        self.name = name
        self._parse = parse

    def convert(self, value, param, ctx):
        if not isinstance(value, str | int) or isinstance(value, bool):
            return value  # already converted (e.g. a default given as a list)
        try:
            return self._parse(value)
        except ValueError as err:
            self.fail(str(err), param, ctx)


SEEDS = _Parsed("seeds", parse_seeds)
STEPS = _Parsed("steps", parse_steps)
DEVICE = _Parsed("device", parse_device)
