"""train.py's LightningCLI: Lightning's subcommands plus ``run``, the run's checkpoints, report and
loggers, and every check that can refuse a command before anything is written.

Built on LightningCLI's public hooks only: ``setup_parser`` (the usage line), ``init_parser``
(``--config`` also takes a preset's name), ``add_core_arguments_to_parser`` (the model may come
from ``--ckpt_path``: LightningCLI reads a checkpoint's hyperparameters itself),
``add_arguments_to_parser``, ``parse_arguments`` (the data, too, from the checkpoint),
``before_instantiate_classes``, ``instantiate_trainer`` and ``before_<subcommand>``.

What a run gets: ``best.ckpt`` (on the module's ``checkpoint_monitor``, or ``--checkpoint.monitor``)
and ``last.ckpt`` (the latest state) in ``RUN/checkpoints/``; the report (``report.json``, with
the run's status); CSV (+ TensorBoard) logs; the random generators' states in every checkpoint;
a stop on a non-finite loss. ``fit`` or ``run`` with ``--ckpt_path RUN/checkpoints/last.ckpt``
resumes the run in its own folder.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import sys
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, Optional

import lightning as L
import yaml
import torch
from jsonargparse import ActionConfigFile, DefaultHelpFormatter, Namespace
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_info

from hyper.checks import check_int, read_yaml_mapping
from hyper.training.checkpoints import load_checkpoint, run_checkpoints, run_folder
from hyper.training.compression.protocol import missing_from
from hyper.training.errors import check_learning_rate, check_learning_rate_flags
from hyper.training.finite import StopOnNonFinite
from hyper.training.folders import check_output_folder
from hyper.training.loggers import FlushLogs, RemoveRunOnError, default_loggers
from hyper.training.report import RunReport, network_name
from hyper.training.resume import RandomState

SUBCOMMANDS = ("fit", "validate", "test", "predict", "run")
# What each subcommand will read of the data (DataModule.check_files checks it up front).
STAGES = {"fit": ("fit",), "run": ("fit", "test"), "validate": ("validate",), "test": ("test",), "predict": ("predict",)}
FITTING = ("fit", "run")

DESCRIPTION = """Train, test and report hypernetworks (Lightning's CLI).

Without a subcommand, `run` (fit, then test the best checkpoint) of configs/default.yaml, or
of the --config given. --config takes a file or a preset's name (configs/NAME.yaml)."""
USAGE = f"%(prog)s [{{{','.join(SUBCOMMANDS)}}}] [-c CONFIG] [OPTIONS]\n       %(prog)s {{sweep,plot,sample}} ..."
EPILOG = """other commands (each has its own --help):
  sweep   run a sweep file's points, append their rows, draw the compression curve
  plot    redraw a sweep's table and curve from its results
  sample  print text from a character model's checkpoint"""


class HelpFormatter(argparse.RawDescriptionHelpFormatter, DefaultHelpFormatter):
    """jsonargparse's help, with the description and the list of other commands kept as written,
    and the subcommand optional (``main`` runs ``run`` without one), not "(required)"."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if isinstance(action, argparse._SubParsersAction):
            return "optional; without one: run"
        return super()._get_help_string(action)


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
            ckpt_path: a checkpoint to resume the fit from (``RUN/checkpoints/last.ckpt``).
        """
        self.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
        best = self.checkpoint_callback.best_model_path if self.checkpoint_callback else ""
        return self.test(model, datamodule=datamodule, ckpt_path=best or None)


class HyperCLI(LightningCLI):
    """LightningCLI with ``run``, preset names, checked input, resumable runs and the report.

    Any LightningModule and LightningDataModule can be named by ``class_path`` in a config. A
    module may define ``check_data(datamodule)`` and a DataModule ``check_files(stages)``,
    raising ValueError or FileNotFoundError; both are called before anything runs or is written.

    Args:
        args: as LightningCLI's.
        config_dir: the presets' folder: ``--config NAME`` may name ``NAME.yaml`` in it.
        kwargs: LightningCLI's other arguments.
    """

    def __init__(self, args: Any = None, *, config_dir: str | Path = "configs", **kwargs: Any) -> None:
        self.config_dir = Path(config_dir)
        self.checkpoint: dict[str, Any] | None = None  # the --ckpt_path's contents, read once
        kwargs.setdefault("trainer_class", Trainer)
        kwargs.setdefault("seed_everything_default", 0)  # reproducible unless asked otherwise
        kwargs.setdefault("trainer_defaults", {"default_root_dir": "runs"})
        kwargs.setdefault("parser_kwargs", _parser_kwargs())
        # A resumed run writes its config into the folder it continues.
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        # One place for the optimiser: the module's own ``optimizer`` argument, which its
        # schedule is built on; no second, module-overriding --optimizer/--lr_scheduler.
        kwargs.setdefault("auto_configure_optimizers", False)
        super().__init__(args=args, **kwargs)

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {**LightningCLI.subcommands(), "run": {"model", "datamodule"}}

    # the parser ----------------------------------------------------------------------------

    def setup_parser(
        self, add_subcommands: bool, main_kwargs: dict[str, Any], subparser_kwargs: dict[str, Any]
    ) -> None:
        super().setup_parser(add_subcommands, main_kwargs, subparser_kwargs)
        if add_subcommands:  # set after the subcommands' own usage lines are derived from it
            self.parser.usage = USAGE

    def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
        kwargs.setdefault("dump_header", [f"lightning.pytorch=={L.__version__}"])
        parser = self.parser_class(**kwargs)
        action = type("PresetConfig", (PresetConfig,), {"config_dir": self.config_dir})
        parser.add_argument(
            "-c", "--config", action=action, help="A config file, or a preset's name (configs/NAME.yaml)."
        )
        return parser

    def add_core_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(self.trainer_class, "trainer")
        parser.set_defaults({f"trainer.{k}": v for k, v in self.trainer_defaults.items() if k != "callbacks"})
        # Not required: with --ckpt_path, LightningCLI reads the model from the checkpoint.
        parser.add_lightning_class_args(L.LightningModule, "model", subclass_mode=True, required=False)
        parser.add_lightning_class_args(L.LightningDataModule, "data", subclass_mode=True, required=False)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--checkpoint.monitor",
            type=Optional[str],
            default=None,
            help="The validation metric best.ckpt follows (null: the module's own, e.g. val_acc).",
        )
        parser.add_argument("--checkpoint.mode", type=Optional[Literal["min", "max"]], default=None)
        parser.add_lightning_class_args(RunReport, "report")
        # A character model's vocabulary is the data's: read off the DataModule when both are
        # built (configs that lack either end, image classification, are left alone).
        parser.link_arguments(
            "data.vocab_size", "model.init_args.network.init_args.vocab_size", apply_on="instantiate"
        )
        parser.add_argument(
            "--threads",
            type=Optional[int],
            default=None,
            help="CPU threads per process for torch's operators (torch.set_num_threads); "
            "null keeps torch's default. One is as fast for small networks, and robust on shared cores.",
        )

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        if args is None or isinstance(args, (list, tuple)):
            check_learning_rate_flags(sys.argv[1:] if args is None else args)
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if path is None:
            return
        # Read (weights_only) before Lightning does, so a bad file is one line in the user's terms.
        self.checkpoint = load_checkpoint(path)
        folder = run_folder(path)
        from_command_line = not isinstance(args, dict)  # a dict is a whole config (a sweep's point)
        if from_command_line and subcommand in FITTING and self.config[subcommand].get("config") is None and folder:
            # The model and data are in the checkpoint, the length of the run and the rest are not.
            raise ValueError(
                f"to resume {folder}, give its config too: {subcommand} --config {folder / 'config.yaml'} "
                f"--ckpt_path {path} (or rerun the command that started it, with --ckpt_path)"
            )
        data = self.checkpoint.get("datamodule_hyper_parameters", {})
        if self.config[subcommand].get("data") is None and "_class_path" in data:
            saved = {"class_path": data["_class_path"], "init_args": _arguments(data)}
            self.config = parser.parse_object({subcommand: {"data": saved}}, self.config)

    # before anything is built or written ---------------------------------------------------

    def before_instantiate_classes(self) -> None:
        threads = self._get(self.config, "threads")
        if threads is not None:
            check_int("threads", threads)
            torch.set_num_threads(threads)
        if self._get(self.config, "model") is None:
            raise ValueError(
                f"no model to {self.subcommand or 'build'}: give --config CONFIG (a file or a preset's "
                "name) or --ckpt_path CHECKPOINT written by train.py"
            )
        model = self._get(self.config, "model")
        learning_rate = model.get("init_args.optimizer.init_args.lr") if isinstance(model, Namespace) else None
        if learning_rate is not None:
            check_learning_rate("model.optimizer.lr", learning_rate)
        trainer = self._get(self.config, "trainer")
        if self.subcommand in FITTING:
            _check_training_length(trainer)
        if self.subcommand is not None and self._resumed_folder() is None:
            check_output_folder(trainer.get("default_root_dir") or "runs", flag="--trainer.default_root_dir")

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        _forget_unused_vocab_link(self.model)

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        self._check_model_and_data()
        config = self._get(self.config_init, "trainer")
        callbacks = config.get("callbacks") or []
        callbacks = [*(callbacks if isinstance(callbacks, list) else [callbacks]), RandomState(), StopOnNonFinite()]
        if config.get("enable_checkpointing") is not False and self.subcommand in (*FITTING, None):
            callbacks += self._checkpoints(config)
        if self.checkpoint is not None and self.subcommand not in FITTING:
            callbacks += self._compressions(callbacks)
        if config.get("logger") in (None, True) and not config.get("fast_dev_run"):
            loggers = self._loggers(config)
            kwargs["logger"] = loggers
            callbacks += [FlushLogs(), RemoveRunOnError(loggers[0].log_dir)]
        kwargs["callbacks"] = callbacks
        return super().instantiate_trainer(**kwargs)

    def _before_running(self) -> None:
        """Fetch what the data needs (a download) and check every file the command will read."""
        if self.datamodule is None:
            return
        if self.trainer.local_rank == 0:
            self.datamodule.prepare_data()  # here, before DDP starts other processes that would wait on it
        self.check_files(STAGES[self.subcommand])

    before_fit = before_validate = before_test = before_predict = before_run = _before_running

    @property
    def report(self) -> dict[str, Any]:
        """The run's report row (what ``report.json`` holds)."""
        return self._get(self.config_init, "report").row

    def check_files(self, stages: Sequence[str] = STAGES["run"]) -> None:
        """Check the files the data will read for ``stages`` (a download still to come passes)."""
        check_files = getattr(self.datamodule, "check_files", None)
        if check_files is not None:
            check_files(stages)

    # pieces ----------------------------------------------------------------------------------

    def _check_model_and_data(self) -> None:
        if self.datamodule is None:
            raise ValueError(
                f"no data to {self.subcommand or 'use'}: give --config CONFIG or --data CLASS "
                "(a checkpoint names its data only when the DataModule saves its hyperparameters)"
            )
        check_data = getattr(self.model, "check_data", None)
        if check_data is not None:
            check_data(self.datamodule)

    def _compressions(self, callbacks: list[L.Callback]) -> list[L.Callback]:
        """The compressions the checkpoint's run used that ``callbacks`` lack: its network is
        scored as the run scored it (a quantised run's float weights quantised again)."""
        source = f"--ckpt_path {self._get(self.config, 'ckpt_path')}"
        missing = missing_from(self.checkpoint, callbacks, source=source)
        for compression in missing:
            arguments = ", ".join(f"{k}={v!r}" for k, v in compression.arguments().items())
            name = f"{type(compression).__name__}({arguments})"
            rank_zero_info(f"the checkpoint's run was compressed by {name}: so is what this {self.subcommand} runs")
        return missing

    def _checkpoints(self, trainer: dict[str, Any]) -> list[L.Callback]:
        monitor, mode = getattr(self.model, "checkpoint_monitor", ("val_acc", "max"))
        given = self._get(self.config, "checkpoint")
        step_based = trainer.get("check_val_every_n_epoch", 1) is None
        return run_checkpoints(monitor=given.monitor or monitor, mode=given.mode or mode, step_based=step_based)

    def _loggers(self, trainer: dict[str, Any]) -> list[L.pytorch.loggers.Logger]:
        folder = self._resumed_folder()
        if folder is None:
            return default_loggers(trainer.get("default_root_dir") or "runs", self._run_name())
        step = int(self.checkpoint.get("global_step", 0))
        warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")  # ours
        rank_zero_info(f"resuming {folder} from {self._get(self.config, 'ckpt_path')} (step {step})")
        return default_loggers(folder.parent.parent, folder.parent.name, version=folder.name, resume_step=step)

    def _resumed_folder(self) -> Path | None:
        """The run folder a ``fit``/``run`` resumes in: the one its checkpoint was written in."""
        if self.subcommand not in FITTING or self.checkpoint is None:
            return None
        return run_folder(self._get(self.config, "ckpt_path"))

    def _run_name(self) -> str:
        network = getattr(self.model, "network", self.model)
        data = type(self.datamodule).__name__.removesuffix("DataModule") if self.datamodule else "nodata"
        return f"{network_name(network)}_{data}".lower().replace("+", "_")


class PresetConfig(ActionConfigFile):
    """``--config``: a file, or the name of a preset in ``config_dir`` (``.yaml`` optional).

    The file is read here first, so that a missing file or broken YAML is one line naming the
    file and the line, not the parser's words.
    """

    config_dir = Path("configs")

    def __call__(self, parser: Any, cfg: Any, values: Any, option_string: str | None = None) -> None:
        if isinstance(values, str) and not _inline(values):
            values = str(find_config(values, self.config_dir))
        super().__call__(parser, cfg, values, option_string)


def find_config(name: str, config_dir: Path) -> Path:
    """The config file ``name`` means: as given, else under the repository or ``config_dir``.

    Raises FileNotFoundError or ValueError (not YAML, not a mapping) in the user's terms.
    """
    given = Path(name)
    candidates = [given, config_dir.parent / given, config_dir / given, config_dir / f"{name}.yaml"]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        if given.is_dir():
            raise ValueError(f"--config {name} is a directory; expected a YAML file or a preset's name")
        presets = ", ".join(sorted(p.stem for p in config_dir.glob("*.yaml"))) or "none"
        raise FileNotFoundError(f"--config {name}: no such file, nor a preset in {config_dir} ({presets})")
    # An empty file (or only comments) is no mapping, even of nothing: jsonargparse says "Unexpected config".
    if not read_yaml_mapping(path, what="--config") and yaml.safe_load(path.read_text(encoding="utf-8")) is None:
        raise ValueError(f"--config {path} is empty: expected a mapping of options (trainer:, model:, data: ...)")
    return path


def _inline(value: str) -> bool:
    """A config given inline (``--config '{trainer: {max_epochs: 1}}'``) rather than as a file."""
    return value.lstrip().startswith("{") or "\n" in value


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


def _check_training_length(trainer: dict[str, Any]) -> None:
    """Refuse a fit that would train nothing (and then test untrained weights)."""
    for key in ("max_epochs", "max_steps"):
        if trainer.get(key) == 0:
            raise ValueError(f"trainer.{key} is 0: nothing would be trained; give a positive number")
    if trainer.get("limit_train_batches") in (0, 0.0):
        raise ValueError("trainer.limit_train_batches is 0: nothing would be trained")


def _arguments(hparams: dict[str, Any]) -> dict[str, Any]:
    """LightningCLI's saved hyperparameters less its own keys (``_class_path``, ``_instantiator``)."""
    return {k: v for k, v in hparams.items() if not k.startswith("_")}


def _parser_kwargs() -> dict[str, Any]:
    """For the main parser and every subcommand's: errors are raised (main prints one line)."""
    return {
        "exit_on_error": False,
        "description": DESCRIPTION,
        "epilog": EPILOG,
        "formatter_class": HelpFormatter,
        **{name: {"exit_on_error": False} for name in SUBCOMMANDS},
    }


def run_config(config: dict[str, Any], *, ckpt_path: str | Path | None = None) -> dict[str, Any]:
    """Fit and test a config (a train.py YAML as a dict, e.g. a sweep's point) in this process.

    Errors are raised, not printed. Returns the report row (what ``report.json`` holds).

    Args:
        config: the config.
        ckpt_path: a checkpoint to resume from (the run goes on in its folder).
    """
    resume = ["--ckpt_path", str(ckpt_path)] if ckpt_path else []
    with _as_file(config) as path:
        return HyperCLI(args=["run", "--config", str(path), *resume]).report


def check_config(config: dict[str, Any]) -> None:
    """Build a config's model, data and trainer and check its files, running and writing nothing."""
    with _as_file(config) as path:
        HyperCLI(args=["--config", str(path)], run=False).check_files()


@contextlib.contextmanager
def _as_file(config: dict[str, Any]) -> Iterator[Path]:
    """``config`` as a YAML file, read the way ``--config`` reads one: jsonargparse resolves a
    ``class_path`` nested under a union-typed argument (a built core given to ``CharRNN(core=)``)
    from a file but not from a dict, which it flattens into keys the default's type lacks."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "config.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        yield path
