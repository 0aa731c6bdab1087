"""The docs name exactly the registered weight sources (``hyper.SOURCES``): a source added to the
registry and not to the docs (or left in the docs after it is gone) fails here.

Where they are named: README's "Other sources" line (besides ``Hyper``, which its examples use),
docs/design.md's word table and its list of sources, one bullet each with its knobs."""

import re

from doc_text import README, doc, prose
from hyper import SOURCES

REGISTERED = {spec.__name__ for spec in SOURCES.values()}
DESIGN = doc("design")


def named(text: str) -> set[str]:
    """The names in backticks in ``text``, a call's arguments dropped (`LowRank(rank=4)` → LowRank)."""
    return {name.split("(")[0] for name in re.findall(r"`([^`]+)`", text)}


def test_readme_names_every_registered_source():
    (line,) = [item for item in prose(README).split(" - ") if item.startswith("**Other sources**")]
    assert named(line) | {"Hyper"} == REGISTERED


def test_design_words_name_every_registered_source():
    (row,) = [line for line in DESIGN.splitlines() if line.startswith("| weight source |")]
    assert named(row) == REGISTERED


def test_design_describes_every_registered_source():
    sources = DESIGN.split("\n## Weight sources\n", 1)[1].split("\n## ", 1)[0]
    bullets = [line for line in sources.splitlines() if line.startswith("- `")]
    assert named("\n".join(bullet.split(":")[0] for bullet in bullets)) == REGISTERED
