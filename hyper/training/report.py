"""The run report: what a model cost (parameters, compression, time) and what it gained (metrics).

A report is one flat-ish dict per run (a sweep's result row): ``describe_network`` gives the
model's part, ``RunReport`` (a callback) adds the measured part at the end of fit and of test,
prints it as a table and writes it as JSON beside the run's checkpoints.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import time
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

from hyper import Wrapped, count_parameters
from hyper.training.compression.protocol import counts_nonzero


def describe_network(network: nn.Module, *, pruned: bool = False, reference: int | None = None) -> dict[str, Any]:
    """The model's part of a report row: class, arguments, weight source, knobs, parameter counts.

    Args:
        network: the network.
        pruned: count trainable parameters on non-zero weights (a magnitude-pruned network).
        reference: the plain-equivalent parameters to compare against, when the network was
            made from a larger one during the run (factorised, units removed, a student):
            the plain-equivalent of the network the run was configured with.
    """
    counts = count_parameters(network, nonzero=pruned)
    if reference is not None and reference != counts.plain_equivalent:
        counts = dataclasses.replace(counts, plain_equivalent=reference)
    spec = getattr(network, "spec", None)
    config = {k: v for k, v in getattr(network, "config", {}).items() if k != "source"}
    return {
        "model": network_name(network),
        "model_args": jsonable(config),
        "source": getattr(spec, "name", None),
        "knobs": jsonable(spec.knobs()) if spec is not None else {},
        "trainable_params": counts.trainable,
        "plain_equivalent_params": counts.plain_equivalent,
        "compression_ratio": counts.compression_ratio,
        "size_bytes": counts.size_bytes,
        "compression_bytes": counts.compression_bytes,
        **({"pruned": True} if pruned else {}),
    }


def network_name(network: nn.Module) -> str:
    """The network's class, or for ``hyper.wrap`` of a module, that module's class and the source."""
    if type(network) is Wrapped:
        return f"{type(network.target).__name__}+{network.spec.name}"
    return type(network).__name__


def log_parameter_counts(module: L.LightningModule) -> None:
    """Log the module's network's trainable / plain-equivalent parameters and ratio, at step 0."""
    counts = count_parameters(module.network)
    sizes = {
        "params_trainable": counts.trainable,
        "params_plain_equivalent": counts.plain_equivalent,
        "compression_ratio": counts.compression_ratio,
        "size_bytes": counts.size_bytes,
    }
    for logger in module.loggers:
        logger.log_metrics(sizes, step=0)


def jsonable(value: Any) -> Any:
    """``value`` with tuples as lists, dataclasses as dicts and unknown objects as their repr."""
    if is_dataclass(value) and not isinstance(value, type):
        return jsonable(asdict(value))
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def format_report(row: dict[str, Any]) -> str:
    """``row`` as an aligned two-column table."""
    lines = [(key, _format_value(value)) for key, value in row.items() if value not in (None, {}, "")]
    width = max(len(key) for key, _ in lines)
    rule = "-" * (width + 2 + max(len(value) for _, value in lines))
    return "\n".join([rule, *(f"{key:<{width}}  {value}" for key, value in lines), rule])


def _format_value(value: Any) -> str:
    if isinstance(value, dict):
        return " ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.4g}"
    return str(value)


class RunReport(Callback):
    """Report a run: a table on stdout at the end of fit and of test, and ``report.json`` in the run folder.

    The fit part: the network (``describe_network`` of the module's ``network``), every ``val_*``
    metric of the last validation and the best value of the checkpoint's monitor, epochs,
    steps, wall time and training throughput (examples per second of training, validation
    time excluded). The test part adds every ``test_*`` metric and the tested checkpoint.

    ``report.json`` also says how the run stands: ``status`` is ``running`` from the start of fit
    (with the epochs and steps of the last checkpoint), then ``finished``, ``failed`` (with the
    error) or ``interrupted``; a run killed outright stays ``running``. Its counters travel in
    checkpoints, so a resumed run reports the whole run (epochs, steps, fit time, throughput).

    Args:
        unit: what one training example is called in the throughput key (``images_per_s``).
        count: how a batch's inputs are counted: ``rows`` (the batch size, for images) or
            ``elements`` (every element, e.g. the tokens of a (B, T) index tensor).
        filename: the report's file name inside the trainer's log directory.
    """

    def __init__(
        self,
        *,
        unit: str = "images",
        count: Literal["rows", "elements"] = "rows",
        filename: str = "report.json",
    ) -> None:
        self.unit = unit
        self.count = count
        self.filename = filename
        self.row: dict[str, Any] = {}
        self._clock: dict[str, float] = {}
        self._earlier = dict(EMPTY_TOTALS)  # what earlier sessions of a resumed run spent
        self._log_dir: str | None = None
        self._finished = False
        self._batch: torch.Tensor | None = None

    # what travels in checkpoints -------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return self._totals()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._earlier = {key: state_dict.get(key, value) for key, value in EMPTY_TOTALS.items()}

    def _totals(self) -> dict[str, Any]:
        """The whole run's fit time, validation time, examples and batches up to now."""
        if "fit" not in self._clock:
            return dict(self._earlier)
        now = time.perf_counter()
        validating = now - self._clock["validation_start"] if "validation_start" in self._clock else 0.0
        return {
            "fit_time_s": self._earlier["fit_time_s"] + now - self._clock["fit"],
            "validation_time_s": self._earlier["validation_time_s"] + self._clock["validation"] + validating,
            "examples": self._earlier["examples"] + self._examples,
            "batches": self._earlier["batches"] + self._batches,
            "sessions": self._earlier["sessions"] + 1,
        }

    # fit ---------------------------------------------------------------------------------------

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # Asked here, where every rank runs: trainer.log_dir is a broadcast, which a hook that
        # runs on one rank only (on_exception) must not call.
        self._log_dir = trainer.log_dir

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._clock = {"fit": _now(pl_module), "validation": 0.0}
        # What the run set out to compress: a callback may swap the network for a smaller one.
        self._reference = count_parameters(pl_module.network).plain_equivalent
        self._examples = self._batches = 0
        self.row = {"status": "running", **self._describe(trainer, pl_module)}
        if trainer.ckpt_path:
            self.row["resumed_from"] = str(trainer.ckpt_path)
        self._write(trainer, self.row)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        inputs = batch[0]
        self._examples += (len(inputs) if self.count == "rows" else inputs.numel()) * trainer.world_size
        self._batches += 1

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if "fit" in self._clock:
            self._clock["validation_start"] = _now(pl_module)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if "validation_start" in self._clock:
            self._clock["validation"] += _now(pl_module) - self._clock.pop("validation_start")

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        # the progress a resume would start from, for a run that is killed before it ends
        self._write(trainer, {**self.row, "epochs": trainer.current_epoch, "steps": trainer.global_step})

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        totals = self._totals()
        self._clock.pop("fit")
        train_time = max(totals["fit_time_s"] - totals["validation_time_s"], 1e-9)
        self.row.update(self._describe(trainer, pl_module))
        self.row.update(_metrics(trainer, "val_"))
        self.row.update(_best(trainer))
        self.row.update({
            "status": "finished",
            "epochs": _epochs(totals["batches"], trainer),
            "steps": trainer.global_step,
            "seed": _seed(),
            "fit_time_s": totals["fit_time_s"],
            f"{self.unit}_per_s": totals["examples"] / train_time,
        })
        if totals["sessions"] > 1:
            self.row["sessions"] = totals["sessions"]  # fit was resumed: the figures are the whole run's
        self._finished = True

    # test ----------------------------------------------------------------------------------

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._clock["test"] = _now(pl_module)
        self._batch = None

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:  # noqa: ANN001
        if self._batch is None and isinstance(batch, (list, tuple)) and isinstance(batch[0], torch.Tensor):
            self._batch = batch[0]  # timed again at the end: the tested network's inference cost

    def _describe(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        pruned = counts_nonzero(trainer.callbacks)  # a compression whose zeros are what it saves
        return describe_network(pl_module.network, pruned=pruned, reference=getattr(self, "_reference", None))

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        test_time = _now(pl_module) - self._clock.pop("test")
        # Described again: the tested network is what counts (quantised at test, made smaller mid-fit).
        self.row.update(self._describe(trainer, pl_module))
        self.row.update(_metrics(trainer, "test_"))
        self.row.update({"status": "finished", "test_time_s": test_time, "tested_checkpoint": trainer.ckpt_path})
        if self._batch is not None:
            self.row.update(latency(pl_module.network, self._batch))
        self._finished = True

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # Last hook of a stage: the progress bars are closed, and a failed stage never gets here
        # with a finished report.
        if self._finished:
            self._finished = False
            path = self._write(trainer, self.row)
            if trainer.is_global_zero:
                print(format_report({**self.row, "report": str(path) if path else None}), flush=True)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if self.row.get("status") != "running":
            return
        status = "interrupted" if isinstance(exception, KeyboardInterrupt) else "failed"
        error = (str(exception).strip().splitlines() or [type(exception).__name__])[0]
        self._write(trainer, {**self.row, "status": status, "error": error}, create=False)

    def _write(self, trainer: L.Trainer, row: dict[str, Any], *, create: bool = True) -> Path | None:
        """Write ``row`` to the report file, whole or not at all; its path (None without a log dir)."""
        if self._log_dir is None:
            return None
        path = Path(self._log_dir) / self.filename
        if trainer.is_global_zero and (create or path.parent.is_dir()):
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_suffix(".tmp")  # readers never see half a report
            temporary.write_text(json.dumps(jsonable(row), indent=2) + "\n")
            os.replace(temporary, path)
        return path


EMPTY_TOTALS = {"fit_time_s": 0.0, "validation_time_s": 0.0, "examples": 0, "batches": 0, "sessions": 0}


@torch.no_grad()
def latency(network: nn.Module, inputs: torch.Tensor, *, repeats: int = 10) -> dict[str, Any]:
    """Median wall time of one forward pass of ``network`` (eval mode) over ``inputs``, in ms."""
    was_training = network.training
    network.eval()
    times = []
    for _ in range(repeats + 1):  # the first call warms up (allocations, lazy init)
        start = time.perf_counter()
        network(inputs)
        if inputs.device.type == "cuda":
            torch.cuda.synchronize(inputs.device)
        times.append(time.perf_counter() - start)
    network.train(was_training)
    return {"latency_ms": 1000 * statistics.median(times[1:]), "latency_batch": len(inputs)}


def _now(pl_module: L.LightningModule) -> float:
    """perf_counter, after the device's queued work (the phases' times are then the device's)."""
    if pl_module.device.type == "cuda":  # queued kernels belong to the phase that launched them
        torch.cuda.synchronize(pl_module.device)
    return time.perf_counter()


def _epochs(batches: int, trainer: L.Trainer) -> float:
    """Epochs trained in this fit, fractional when it stopped mid-epoch (``max_steps``)."""
    per_epoch = trainer.num_training_batches
    return round(batches / per_epoch, 2) if 0 < per_epoch < float("inf") else trainer.current_epoch


def _metrics(trainer: L.Trainer, prefix: str) -> dict[str, float]:
    return {k: float(v) for k, v in sorted(trainer.callback_metrics.items()) if k.startswith(prefix)}


def _best(trainer: L.Trainer) -> dict[str, Any]:
    checkpoint = trainer.checkpoint_callback
    if checkpoint is None or not getattr(checkpoint, "best_model_path", ""):
        return {}
    best = {"best_checkpoint": checkpoint.best_model_path}
    if checkpoint.monitor and checkpoint.best_model_score is not None:
        best[f"best_{checkpoint.monitor}"] = float(checkpoint.best_model_score)
    return best


def _seed() -> int | None:
    seed = os.environ.get("PL_GLOBAL_SEED")  # set by seed_everything
    return int(seed) if seed is not None else None
