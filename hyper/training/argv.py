"""What a user types, made into a full LightningCLI command.

- no arguments: ``run --config configs/default.yaml``;
- options without a subcommand: ``run`` of the default config (or of the ``--config`` given);
- ``--config NAME`` finds ``NAME``, ``configs/NAME`` or ``configs/NAME.yaml`` from any directory;
- ``validate``/``test``/``predict`` with ``--ckpt_path`` and no config: the model (and the data,
  when the checkpoint holds them) are read from the checkpoint, so nothing is restated. Options
  after them still override (``--data.data_dir``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

SUBCOMMANDS = ("fit", "validate", "test", "predict", "run")
EVALUATIONS = ("validate", "test", "predict")
CONFIG_FLAGS = ("-c", "--config")
HELP_FLAGS = ("-h", "--help")


def expand_args(args: Sequence[str], config_dir: Path) -> list[str]:
    """``args`` as a full command: subcommand, config and checkpoint contents made explicit."""
    args = _resolve_config_paths(args, config_dir)
    default = ["--config", str(config_dir / "default.yaml")]
    if not args:
        return ["run", *default]
    if args[0] in HELP_FLAGS:
        return args
    if args[0] not in SUBCOMMANDS:
        return ["run", *([] if _given(args, *CONFIG_FLAGS) else default), *args]
    if args[0] in EVALUATIONS and not _given(args, *CONFIG_FLAGS, "--model"):
        return [args[0], *_from_checkpoint(args), *args[1:]]
    return args


def find_config(name: str, config_dir: Path) -> Path:
    """``name`` as given, else under the repository or ``config_dir`` (``.yaml`` optional)."""
    given = Path(name)
    candidates = [given, config_dir.parent / given, config_dir / given, config_dir / f"{name}.yaml"]
    return next((path for path in candidates if path.is_file()), given)


def _resolve_config_paths(args: Sequence[str], config_dir: Path) -> list[str]:
    resolved = list(args)
    for i in range(1, len(resolved)):
        if resolved[i - 1] in CONFIG_FLAGS:
            resolved[i] = str(find_config(resolved[i], config_dir))
    return resolved


def _from_checkpoint(args: Sequence[str]) -> list[str]:
    """``--model`` (and ``--data``) options rebuilding what the checkpoint was trained with."""
    path = _value(args, "--ckpt_path")
    if path is None or not Path(path).is_file():
        return []  # Lightning reports the missing model or file in its own words
    saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    options = []
    for flag, key in (("--model", "hyper_parameters"), ("--data", "datamodule_hyper_parameters")):
        config = _subclass_config(saved.get(key, {}))
        if config and not _given(args, flag):
            options += [flag, json.dumps(config)]
    return options


def _subclass_config(hparams: dict[str, Any]) -> dict[str, Any] | None:
    """LightningCLI's saved hyperparameters (``_class_path`` + arguments) as a class_path config."""
    init_args = {k: v for k, v in hparams.items() if not k.startswith("_")}
    if "_class_path" not in hparams:
        return None
    return {"class_path": hparams["_class_path"], "init_args": init_args}


def _given(args: Sequence[str], *flags: str) -> bool:
    return any(arg in flags or arg.split("=", 1)[0] in flags for arg in args)


def _value(args: Sequence[str], flag: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(f"{flag}="):
            return arg.split("=", 1)[1]
    return None
