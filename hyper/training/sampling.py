"""Text from a trained character model: ``sample_text`` and the ``sample`` command.

    python train.py sample --ckpt_path runs/.../checkpoints/last.ckpt --prompt "ROMEO:" \
        --length 300 --temperature 0.8 --seed 0

The network is rebuilt from the checkpoint's hyperparameters and the vocabulary comes from the
checkpoint's ``CharDataModule`` state, so nothing else (no corpus) is needed. The prompt is read
by the network first; then each next character is drawn from softmax(logits / temperature),
never ``<unk>``. Draws use a CPU generator, so a seed gives the same text on any device.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from hyper.checks import check_int
from hyper.data.text import UNK_ID, CharDataModule, encode
from hyper.training.checkpoints import load_checkpoint, network_from_checkpoint

DATA_STATE_KEY = CharDataModule.__qualname__  # where Lightning keeps a DataModule's state_dict


@torch.no_grad()
def sample_ids(
    network: nn.Module,
    prompt: Tensor,
    *,
    length: int,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``length`` ids (length,) drawn after reading ``prompt`` (N,) int64, N ≥ 1.

    Args:
        network: tokens (B, T) → (logits (B, T, V), state), e.g. ``models.CharRNN``.
        prompt: the ids the sample continues.
        length: ids to draw.
        temperature: divides the logits: below 1 sharper, above 1 flatter; must be > 0.
        generator: a CPU ``torch.Generator`` for reproducible draws (torch's global one if None).
    """
    _check_sampling(prompt_length=len(prompt), length=length, temperature=temperature)
    was_training = network.training
    network.eval()  # no dropout while sampling
    try:
        device = next(network.parameters()).device
        logits, state = network(prompt.long().to(device)[None], None)  # (1, N, V)
        drawn = []
        for _ in range(length):
            token = _draw(logits[0, -1], temperature, generator)  # (1,)
            drawn.append(token)
            logits, state = network(token.to(device)[None], state)  # (1, 1, V)
    finally:
        network.train(was_training)
    return torch.cat(drawn) if drawn else torch.zeros(0, dtype=torch.long)


def sample_text(
    network: nn.Module,
    vocab: Sequence[str],
    prompt: str,
    length: int,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> str:
    """``length`` characters continuing ``prompt`` (text vocabularies; see ``sample_ids``).

    ``vocab`` maps id → character, id 0 being ``<unk>``; prompt characters not in it are read
    as ``<unk>``.
    """
    ids = sample_ids(
        network, encode(prompt, list(vocab)).long(), length=length, temperature=temperature, generator=generator
    )
    return "".join(vocab[i] for i in ids.tolist())


def _draw(logits: Tensor, temperature: float, generator: torch.Generator | None) -> Tensor:
    """One id (1,) from logits (V,): ``<unk>`` is never drawn (it stands for no character)."""
    logits = (logits.float().cpu() / temperature).clone()
    logits[UNK_ID] = float("-inf")
    return torch.multinomial(logits.softmax(-1), 1, generator=generator)


def _check_sampling(*, prompt_length: int, length: int, temperature: float) -> None:
    if prompt_length < 1:
        raise ValueError("the prompt must have at least one character")
    check_int("length", length, minimum=0)
    if not 0 < temperature < math.inf:  # NaN fails both
        raise ValueError(f"temperature must be a positive finite number, got {temperature}")


# the command -------------------------------------------------------------------------------


def sample_command(args: Sequence[str]) -> None:
    """``train.py sample``: print the prompt and its continuation."""
    options = _parse(args)
    _check_sampling(prompt_length=len(options.prompt), length=options.length, temperature=options.temperature)
    checkpoint = load_checkpoint(options.ckpt_path)
    source = f"--ckpt_path {options.ckpt_path}"
    data = data_from_checkpoint(checkpoint, source=source)  # first: a checkpoint of another kind is refused cheaply
    network = network_from_checkpoint(checkpoint, source=source)
    unseen = sorted({c for c in options.prompt if (data.encode(c) == UNK_ID).any()})
    if unseen:
        print(f"note: prompt characters not in the vocabulary, read as <unk>: {''.join(unseen)!r}", file=sys.stderr)
    generator = torch.Generator().manual_seed(options.seed)
    ids = sample_ids(
        network, data.encode(options.prompt), length=options.length, temperature=options.temperature, generator=generator
    )
    print(options.prompt + data.decode(ids), flush=True)


def _parse(args: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="train.py sample",
        description="Print text from a character language model's checkpoint.",
        exit_on_error=False,
    )
    parser.add_argument("--ckpt_path", help="a checkpoint written by train.py (its network and vocabulary)")
    parser.add_argument("--prompt", default="\n", help="the text to continue (default: a newline)")
    parser.add_argument("--length", type=int, default=300, help="characters to generate")
    parser.add_argument("--temperature", type=float, default=0.8, help="softmax temperature, > 0")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draws")
    options, unknown = parser.parse_known_args(args)
    if unknown:
        raise ValueError(f"sample does not take {' '.join(unknown)} (see train.py sample --help)")
    if options.ckpt_path is None:
        raise ValueError("sample needs --ckpt_path CHECKPOINT (a .ckpt written by train.py)")
    return options


def data_from_checkpoint(checkpoint: dict[str, Any], *, source: str) -> CharDataModule:
    """A CharDataModule holding the checkpoint's vocabulary (its corpus is never read)."""
    state = checkpoint.get(DATA_STATE_KEY)
    if state is None:
        raise ValueError(
            f"{source} holds no vocabulary (no CharDataModule state): sample needs a character model's checkpoint"
        )
    saved = checkpoint.get("datamodule_hyper_parameters", {})
    data = CharDataModule(path=saved.get("path"), format=state.get("format", "text"))
    data.load_state_dict(state)
    return data
