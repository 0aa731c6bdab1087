"""Mistakes a user can make, and how the command line says them: one line, never a traceback."""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Sequence

from lightning.fabric.utilities.exceptions import MisconfigurationException

# Mistakes a user makes in a command, a config or a file: one line, not a traceback.
USER_ERRORS = (argparse.ArgumentError, ValueError, FileNotFoundError, MisconfigurationException)

# The optimiser's learning rate on the command line: --model[.init_args].optimizer[.init_args].lr[=VALUE]
LEARNING_RATE_FLAG = re.compile(r"(--model(?:\.init_args)?\.optimizer(?:\.init_args)?\.lr)(?:=(.*))?$")


def one_line(error: BaseException) -> str:
    """What is wrong, in one line: where (the config key) and the cause.

    jsonargparse wraps the real cause (a constructor's ValueError, a type mismatch) in errors
    that list every alternative of every union on the way: the cause is the first error down the
    ``__cause__`` chain that is not such a wrapper, and the key path is in the outermost message.
    """
    chain = [error]
    while chain[-1].__cause__ is not None:
        chain.append(chain[-1].__cause__)
    cause = next((e for e in chain if not _parser_wrapper(e)), chain[-1])
    lines = [re.sub(r"^\s*(- )?", "", line).rstrip() for line in str(cause).splitlines()]  # "  - " bullets
    lines = [line for line in lines if line]
    message = re.sub(r"<class '([\w.]+)'>", r"\1", lines[0] if lines else type(cause).__name__)
    keys = re.findall(r'Parser key "([^"]+)"', str(error))
    return f"{'.'.join(keys)}: {message}" if keys and cause is not error else message


def check_learning_rate(where: str, value: object) -> None:
    """Raise ValueError unless ``value`` (a number, or the text given for one) is finite and positive."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number) or number <= 0:
        raise ValueError(f"{where}: the learning rate must be a finite positive number, got {value}")


def check_learning_rate_flags(args: Sequence[str]) -> None:
    """Check the learning rates a command line gives, before jsonargparse reads them: its words
    for ``nan`` or ``inf`` are about the optimizer's type, not the value."""
    for i, arg in enumerate(args):
        match = LEARNING_RATE_FLAG.match(arg) if isinstance(arg, str) else None
        if match is None:
            continue
        value = match[2] if match[2] is not None else (args[i + 1] if i + 1 < len(args) else None)
        if value is not None:  # a flag without its value is the parser's to report
            check_learning_rate(match[1], value)


def _parser_wrapper(error: BaseException) -> bool:
    """Whether ``error`` is jsonargparse's wrapping of another (its message says where, not what)."""
    first = (str(error).strip().splitlines() or [""])[0]
    wrapper_starts = (
        "Parser key", "Problem with given class_path", "Does not validate against any", "Validation failed", "Call to compute_fn",
    )
    # A class_path argument (an optimizer) says its type, not what is wrong with its init_args.
    callable_type = re.match(r"Type .* expects a function or a callable class: Parser key", first)
    return error.__cause__ is not None and (first.startswith(wrapper_starts) or callable_type is not None)
