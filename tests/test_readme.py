"""The README's parameter table is what the project's own code counts."""

from pathlib import Path

from models.paper_table import paper_table

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_table_is_current():
    text = README.read_text()
    table = text.split("<!-- paper-table -->\n", 1)[1].split("\n<!-- /paper-table -->", 1)[0]
    assert table == paper_table()


def test_readme_example_runs():
    import re

    code = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)[0]
    exec(compile(code, "README example", "exec"), {})
