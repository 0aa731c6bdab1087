"""The results file of a sweep: one JSON line per finished point.

Each shard appends to its own file (``results.jsonl``, or ``results.shard-i-of-n.jsonl``) with
one write of one line, flushed and fsynced, so a sweep killed midway keeps every finished point.
A write cut by a crash leaves a partial last line: it is cut off before the next row is
appended (else the two would merge into one unreadable line, and the next point be lost), and
skipped when reading. A point whose key is already there is not run again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def results_path(folder: Path, shard: tuple[int, int] | None) -> Path:
    if shard is None or shard[1] == 1:
        return folder / "results.jsonl"
    return folder / f"results.shard-{shard[0]}-of-{shard[1]}.jsonl"


def repair(path: Path) -> int:
    """Cut a partial last line (no newline at its end) off ``path``; the bytes cut (0: none)."""
    if not path.is_file():
        return 0
    with open(path, "rb+") as file:
        size = file.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        file.seek(size - 1)
        if file.read(1) == b"\n":
            return 0
        file.seek(0)
        keep = file.read().rfind(b"\n") + 1  # 0 when the only line is partial
        file.truncate(keep)
        file.flush()
        os.fsync(file.fileno())
    return size - keep


def append_row(path: Path, row: dict[str, Any]) -> None:
    """Append one row as one line, durably, after cutting off a partial line a crash left."""
    path.parent.mkdir(parents=True, exist_ok=True)
    repair(path)
    line = json.dumps(row, sort_keys=True, default=str) + "\n"
    with open(path, "a", encoding="utf-8") as file:
        file.write(line)
        file.flush()
        os.fsync(file.fileno())


def read_rows(source: Path) -> list[dict[str, Any]]:
    """Rows of a results file, or of every ``results*.jsonl`` in a folder, merged.

    A partial line (a write cut by a crash) is skipped; so is a repeated key.
    """
    files = sorted(source.glob("results*.jsonl")) if source.is_dir() else [source]
    if not files or not all(f.is_file() for f in files):
        raise FileNotFoundError(f"no results file at {source}")
    rows, seen = [], set()
    for file in files:
        for line in file.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and row.get("key") not in seen:
                seen.add(row.get("key"))
                rows.append(row)
    return rows


def done_keys(folder: Path) -> set[str]:
    """Keys of the points already finished in this folder (any shard)."""
    try:
        return {row["key"] for row in read_rows(folder) if "key" in row}
    except FileNotFoundError:
        return set()
