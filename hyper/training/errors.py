"""Mistakes a user can make, and how the command line says them: one line, never a traceback."""

from __future__ import annotations

import argparse
import re

from lightning.fabric.utilities.exceptions import MisconfigurationException

# Mistakes a user makes in a command, a config or a file: one line, not a traceback.
USER_ERRORS = (argparse.ArgumentError, ValueError, FileNotFoundError, MisconfigurationException)


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


def _parser_wrapper(error: BaseException) -> bool:
    """Whether ``error`` is jsonargparse's wrapping of another (its message says where, not what)."""
    first = (str(error).strip().splitlines() or [""])[0]
    wrapper_starts = (
        "Parser key", "Problem with given class_path", "Does not validate against any", "Validation failed", "Call to compute_fn",
    )
    return error.__cause__ is not None and first.startswith(wrapper_starts)
