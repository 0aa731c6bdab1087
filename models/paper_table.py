"""The parameter table of the paper's four CIFAR-10 models, counted by this project.

Run: ``python -m models.paper_table`` (prints the Markdown table the README shows).
"""

from __future__ import annotations

from hyper import count_parameters
from models.factory import create_model

# Ha, Dai & Le (2016), Table 2: parameters as the paper reports them, and its test errors.
PAPER = {
    "wrn40_1": ("Wide ResNet 40-1", "0.563M", "6.73%"),
    "hyper_wrn40_1": ("Hyper ResNet 40-1", "0.097M", "8.02%"),
    "wrn40_2": ("Wide ResNet 40-2", "2.236M", "5.66%"),
    "hyper_wrn40_2": ("Hyper ResNet 40-2", "0.148M", "7.23%"),
}


def paper_table() -> str:
    """Markdown table: our exact counts next to the paper's figures."""
    lines = [
        "| model | preset | trainable | plain-equivalent | compression | paper: params | paper: test error |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, (title, params, error) in PAPER.items():
        count = count_parameters(create_model(name))
        lines.append(
            f"| {title} | `{name}` | {count.trainable:,} | {count.plain_equivalent:,} | "
            f"{count.compression_ratio:.2f}x | {params} | {error} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(paper_table())
