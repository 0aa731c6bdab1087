"""The command line's entry point (``train.py``): which command runs, and one line per mistake.

    python train.py [fit|validate|test|predict|run] [OPTIONS]   # LightningCLI (hyper_cli.HyperCLI)
    python train.py sweep|plot ...                              # hyper.training.sweep_cli
    python train.py sample ...                                  # hyper.training.sampling

Without a subcommand, ``python train.py [OPTIONS]`` is ``run`` (fit, then test the best
checkpoint) of ``configs/default.yaml``, or of the ``--config`` given: LightningCLI requires a
subcommand, and this is the one thing added to what the user typed.

A mistake a user can make (a bad flag or value, a model that does not fit the data, a missing,
truncated or unreadable file) prints one ``error:`` line and exits with status 2, leaving no run
folder and no results row behind (``HYPER_DEBUG=1`` shows the traceback instead). Under DDP only
rank 0 reports such a mistake; another rank that fails (for instance because rank 0 stopped)
prints one line too, never a traceback.

Imports go one way: this module → hyper_cli, sweep_cli, sampling; sweep_cli → hyper_cli.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from lightning.pytorch.utilities import rank_zero_only

from hyper.training.errors import USER_ERRORS, one_line
from hyper.training.hyper_cli import SUBCOMMANDS, HyperCLI

HELP = ("-h", "--help")


def main(args: Sequence[str] | None = None, *, config_dir: str | Path = "configs") -> int:
    """The command line's entry point; returns the exit status.

    Args:
        args: the arguments (``sys.argv[1:]`` when None).
        config_dir: the presets' folder: holds ``default.yaml``; ``--config NAME`` may name a
            file in it (with or without ``.yaml``) from any working directory.
    """
    args = sys.argv[1:] if args is None else list(args)
    # We do pass both on purpose: args are sys.argv with the default subcommand.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    # Lightning 2.6's own pytree code trips a deprecation of torch >= 2.13 on every run: nothing a
    # user can act on, and on stderr it would stand before a one-line error.
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    # The seed is in config.yaml and the report; its INFO line would precede a config error's line.
    logging.getLogger("lightning.fabric.utilities.seed").setLevel(logging.WARNING)
    try:
        _dispatch(args, Path(config_dir))
    except USER_ERRORS as error:
        if os.environ.get("HYPER_DEBUG"):
            raise
        if rank_zero_only.rank == 0:  # every rank meets the same mistake: said once
            print(f"error: {one_line(error)}", file=sys.stderr)
        return 2
    except Exception as error:
        if os.environ.get("HYPER_DEBUG") or rank_zero_only.rank == 0:
            raise
        # Another DDP process: most often its collective failed because rank 0 stopped, whose
        # error is above. One line, not a traceback per rank.
        print(f"error: rank {rank_zero_only.rank} stopped: {one_line(error)}", file=sys.stderr)
        return 1
    return 0


def _dispatch(args: list[str], config_dir: Path) -> None:
    command = args[0] if args else None
    if command == "sample":
        from hyper.training.sampling import sample_command

        sample_command(args[1:])
    elif command in ("sweep", "plot"):
        from hyper.training.sweep_cli import COMMANDS  # the sweep code and matplotlib only when asked

        COMMANDS[command](args[1:], config_dir=config_dir)
    else:
        HyperCLI(args=with_default_subcommand(args, config_dir), config_dir=config_dir)


def with_default_subcommand(args: Sequence[str], config_dir: Path) -> list[str]:
    """``args`` with ``run`` in front when they name no subcommand, and the default config when
    they name no config either."""
    if args and (args[0] in SUBCOMMANDS or args[0] in HELP):
        return list(args)
    given = any(arg in ("-c", "--config") or arg.startswith("--config=") for arg in args)
    return ["run", *([] if given else ["--config", str(config_dir / "default.yaml")]), *args]
