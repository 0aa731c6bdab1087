"""Reading the README and the docs: marked sections, figures in prose, Markdown tables.

Shared by the tests that check the docs against what the project counts and what committed
result files hold (tests/test_readme.py, tests/test_benchmarks_doc.py).
"""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
RESULTS = ROOT / "benchmarks" / "results"


def doc(name: str) -> str:
    """The text of docs/NAME.md."""
    return (ROOT / "docs" / f"{name}.md").read_text()


def section(name: str, text: str = README) -> str:
    """What lies between ``<!-- name -->`` and ``<!-- /name -->`` in ``text``."""
    return text.split(f"<!-- {name} -->\n", 1)[1].split(f"\n<!-- /{name} -->", 1)[0]


def prose(text: str) -> str:
    """``text`` with every run of whitespace one space: figures are searched across line breaks."""
    return " ".join(text.split())


def stated(pattern: str, text: str) -> tuple[str, ...]:
    """The groups of ``pattern``'s one match in ``prose(text)``."""
    (match,) = re.finditer(pattern, prose(text))
    return match.groups()


def markdown_table(header: list[str], align: list[str], rows: list[list[str]]) -> str:
    lines = [f"| {' | '.join(header)} |", f"|{'|'.join(align)}|"]
    return "\n".join(lines + [f"| {' | '.join(row)} |" for row in rows])
