"""Checks of what a user gives, raised early and in the user's terms (one line each).

The training glue (data modules, the command line, sweeps, sampling) checks its integers here, so
that every ``batch_size``, ``--threads`` or ``--length`` is refused with the same words, and reads
its YAML files here, so that a broken file is named with its line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def check_int(name: str, value: object, *, minimum: int = 1) -> None:
    """Raise ValueError unless ``value`` is an integer (not a bool) of at least ``minimum``.

    ``minimum=1``: "a positive integer"; ``minimum=0``: "a non-negative integer".
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = {1: "a positive integer", 0: "a non-negative integer"}.get(minimum, f"an integer >= {minimum}")
        raise ValueError(f"{name} must be {kind}, got {value!r}")


def read_yaml_mapping(path: Path, *, what: str) -> dict[str, Any]:
    """``path``'s YAML, which must be a mapping; ValueError naming the file and line otherwise."""
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"{what} {path} is not a text file") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ValueError(f"{what} {path}{where}: not valid YAML ({problem})") from None
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise ValueError(f"{what} {path} must be a mapping of options, got a {type(content).__name__}")
    return content
