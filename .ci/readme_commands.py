"""Print the README's two fresh-machine commands (its first ```bash block), one a line, without
their trailing comments: what .ci/run runs and tests/test_readme.py checks."""

import sys
from pathlib import Path


def readme_commands(readme: str) -> list[str]:
    block = readme.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line.split("  #", 1)[0].strip() for line in block.splitlines() if line.strip()]


if __name__ == "__main__":
    print("\n".join(readme_commands(Path(sys.argv[1]).read_text())))
