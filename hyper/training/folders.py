"""Output folders, checked before a run starts, so that a path that cannot be written is one line
naming it rather than a traceback from deep inside a logger."""

from __future__ import annotations

import tempfile
from pathlib import Path


def check_output_folder(path: str | Path, *, flag: str) -> None:
    """Raise ValueError unless ``path`` is, or can become, a folder this process can write in.

    Nothing is left behind: the nearest existing folder on the way is tried with a temporary file.

    Args:
        path: the folder a command will write in.
        flag: how the user gave it (``--trainer.default_root_dir``, ``sweep --out``), for the message.
    """
    path = Path(path).expanduser()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{flag} {path}: {existing} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise ValueError(f"{flag} {path}: cannot write in {existing} ({err.strerror or err})") from None
