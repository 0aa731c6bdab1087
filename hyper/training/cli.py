"""The command line: LightningCLI over hyper's training pieces.

Subcommands are Lightning's (``fit``, ``validate``, ``test``, ``predict``) plus ``run``: fit,
then test the best checkpoint, then report; ``sweep`` and ``plot`` (``hyper.training.sweep_cli``)
run many configs and draw their curves; ``sample`` (``hyper.training.sampling``) prints text from
a character model's checkpoint. ``python train.py`` with no arguments is
``run --config configs/default.yaml``; options without a subcommand run the default config with
those overrides. Every run gets a checkpoint callback on the validation metric (best + last),
the report callback, and CSV (+ TensorBoard) loggers in ``runs/NAME/version_N/``.

A mistake a user can make (a bad flag or value, a model that does not fit the data, missing
data files) prints one ``error:`` line and exits with status 2, leaving no run directory behind
(``HYPER_DEBUG=1`` shows the traceback instead).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import logging
import os
import re
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Optional

import lightning as L
import torch
from jsonargparse.typing import PositiveInt
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from hyper.training.argv import SUBCOMMANDS, expand_args
from hyper.training.loggers import RemoveRunOnError, default_loggers
from hyper.training.report import RunReport, network_name

# Mistakes a user makes in a command or config: one line, not a traceback.
USER_ERRORS = (argparse.ArgumentError, ValueError, FileNotFoundError, MisconfigurationException)


class Trainer(L.Trainer):
    """Lightning's Trainer with ``run``: fit, then test."""

    def run(
        self,
        model: L.LightningModule,
        datamodule: L.LightningDataModule | None = None,
        ckpt_path: str | None = None,
    ) -> list[dict[str, float]]:
        """Fit, then test the best checkpoint (the final weights when none was saved).

        Args:
            model: the LightningModule to train.
            datamodule: the data.
            ckpt_path: a checkpoint to resume the fit from.
        """
        self.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
        best = self.checkpoint_callback.best_model_path if self.checkpoint_callback else ""
        return self.test(model, datamodule=datamodule, ckpt_path=best or None)


class HyperCLI(LightningCLI):
    """LightningCLI with the ``run`` subcommand, checkpointing, the report and default loggers.

    Any LightningModule and LightningDataModule can be named by ``class_path`` in a config.
    A module may define ``check_data(datamodule)``, raising ValueError when the two do not
    fit; it is called before anything runs or is written.
    """

    def __init__(self, args: Sequence[str] | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("trainer_class", Trainer)
        kwargs.setdefault("seed_everything_default", 0)  # reproducible unless asked otherwise
        kwargs.setdefault("trainer_defaults", {"default_root_dir": "runs"})
        kwargs.setdefault("parser_kwargs", _parser_kwargs(exit_on_error=False))
        # One place for the optimiser: the module's own ``optimizer`` argument, which its
        # schedule is built on; no second, module-overriding --optimizer/--lr_scheduler.
        kwargs.setdefault("auto_configure_optimizers", False)
        super().__init__(args=args, **kwargs)

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {**LightningCLI.subcommands(), "run": {"model", "datamodule"}}

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({
            "checkpoint.monitor": "val_acc",
            "checkpoint.mode": "max",
            "checkpoint.save_last": True,
        })
        parser.add_lightning_class_args(RunReport, "report")
        # A character model's vocabulary is the data's: read off the DataModule when both are
        # built (configs that lack either end, image classification, are left alone).
        parser.link_arguments(
            "data.vocab_size", "model.init_args.network.init_args.vocab_size", apply_on="instantiate"
        )
        parser.add_argument(
            "--threads",
            type=Optional[PositiveInt],
            default=None,
            help="CPU threads per process for torch's operators (torch.set_num_threads); "
            "null keeps torch's default. One is as fast for small networks, and robust on shared cores.",
        )

    def before_instantiate_classes(self) -> None:
        threads = self._get(self.config, "threads")
        if threads is not None:
            torch.set_num_threads(threads)
        self._monitor_the_model()

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        _forget_unused_vocab_link(self.model)

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        self._check_data()  # model and data exist, nothing is written yet: the time to refuse
        config = self._get(self.config_init, "trainer")
        if config.get("logger") in (None, True) and not config.get("fast_dev_run"):
            loggers = default_loggers(config.get("default_root_dir") or "runs", self._run_name())
            kwargs["logger"] = loggers
            given = config.get("callbacks") or []
            given = given if isinstance(given, list) else [given]
            kwargs["callbacks"] = [*given, RemoveRunOnError(loggers[0].log_dir)]
        return super().instantiate_trainer(**kwargs)

    @property
    def report(self) -> dict[str, Any]:
        """The run's report row (what ``report.json`` holds)."""
        return self._get(self.config_init, "report").row

    def _check_data(self) -> None:
        if self.datamodule is None:
            raise ValueError(
                f"no data to {self.subcommand or 'use'}: give --config CONFIG or --data CLASS "
                "(a checkpoint names its data only when the DataModule saves its hyperparameters)"
            )
        check_data = getattr(self.model, "check_data", None)
        if check_data is not None:
            check_data(self.datamodule)

    def _monitor_the_model(self) -> None:
        """A module's own ``checkpoint_monitor`` (name, mode) replaces the default ``val_acc``."""
        checkpoint = self._get(self.config, "checkpoint")
        model = self._get(self.config, "model")
        if checkpoint is None or checkpoint.monitor != "val_acc" or not getattr(model, "class_path", None):
            return
        module, _, name = model.class_path.rpartition(".")
        monitor = getattr(getattr(importlib.import_module(module), name, None), "checkpoint_monitor", None)
        if monitor is not None:
            checkpoint.monitor, checkpoint.mode = monitor

    def _run_name(self) -> str:
        network = getattr(self.model, "network", self.model)
        data = type(self.datamodule).__name__.removesuffix("DataModule") if self.datamodule else "nodata"
        return f"{network_name(network)}_{data}".lower().replace("+", "_")


def main(args: Sequence[str] | None = None, *, config_dir: str | Path = "configs") -> int:
    """The command line's entry point; returns the exit status.

    Args:
        args: the arguments (``sys.argv[1:]`` when None).
        config_dir: the presets' folder: holds ``default.yaml``; ``--config NAME`` may name a
            file in it (with or without ``.yaml``) from any working directory.
    """
    args = sys.argv[1:] if args is None else list(args)
    # We do pass both on purpose: args are sys.argv expanded (default subcommand and config).
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    # The seed is in config.yaml and the report; its INFO line would precede a config error's line.
    logging.getLogger("lightning.fabric.utilities.seed").setLevel(logging.WARNING)
    try:
        command = _sweep_command(args)
        if command is not None:
            command(args[1:])
        else:
            HyperCLI(args=expand_args(args, Path(config_dir)))
    except USER_ERRORS as error:
        if os.environ.get("HYPER_DEBUG"):
            raise
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 2
    return 0


def run_config(config: dict[str, Any], *, subcommand: str = "run") -> dict[str, Any]:
    """Run a config (a train.py YAML as a dict, e.g. a sweep's point) in this process.

    Errors are raised, not printed. Returns the report row (what ``report.json`` holds).
    """
    return HyperCLI(args={"subcommand": subcommand, subcommand: config}).report


def one_line(error: BaseException) -> str:
    """What is wrong, in one line: where (the config key) and the innermost cause.

    jsonargparse wraps the real cause (a constructor's ValueError, a type mismatch) in errors
    that list every alternative of every union on the way; the cause is at the end of the
    ``__cause__`` chain and the key path is in the outermost message.
    """
    cause = error
    while cause.__cause__ is not None:
        cause = cause.__cause__
    lines = [line.strip(" -") for line in str(cause).splitlines() if line.strip(" -")]
    message = re.sub(r"<class '([\w.]+)'>", r"\1", lines[0] if lines else type(cause).__name__)
    keys = re.findall(r'Parser key "([^"]+)"', str(error))
    return f"{'.'.join(keys)}: {message}" if keys and cause is not error else message


def _sweep_command(args: Sequence[str]) -> Callable[[Sequence[str]], None] | None:
    """``sweep`` and ``plot`` (commands over many runs) and ``sample``: outside LightningCLI."""
    if args and args[0] == "sample":
        from hyper.training.sampling import sample_command

        return sample_command
    if not args or args[0] not in ("sweep", "plot"):
        return None
    from hyper.training.sweep_cli import COMMANDS  # the sweep code and matplotlib only when asked

    return COMMANDS[args[0]]


def _forget_unused_vocab_link(model: L.LightningModule) -> None:
    """Drop the data's vocab_size from the saved network config when the network does not take it.

    The link data.vocab_size -> network.vocab_size is skipped for a network without that argument
    (``hyper.Wrapped`` around a character model: the user states vocab_size on the target), but
    Lightning still records the value among the network's saved arguments, and a checkpoint would
    then not rebuild its network.
    """
    network, saved = getattr(model, "network", None), getattr(model, "hparams", {}).get("network")
    if network is None or not isinstance(saved, dict) or "vocab_size" not in saved.get("init_args", {}):
        return
    if "vocab_size" not in inspect.signature(type(network).__init__).parameters:
        del saved["init_args"]["vocab_size"]


def _parser_kwargs(**kwargs: Any) -> dict[str, Any]:
    """``kwargs`` for the main parser and every subcommand's parser."""
    return {**kwargs, **{name: dict(kwargs) for name in SUBCOMMANDS}}
