"""Magnitude pruning through the real training code: the tested model is the pruned one."""

import json

import torch
import yaml

from hyper.training.cli import main
from test_cli import only_run, write_config

PLAIN = {"class_path": "models.WideResNet", "init_args": {"depth": 10, "width": 1, "num_classes": 4, "in_channels": 3}}


def pruned_config(folder, amount=0.75, prune_at_epoch=1, max_epochs=3, scope="layer"):
    path = write_config(folder)
    config = yaml.safe_load(path.read_text())
    config["model"]["init_args"].update(network=PLAIN, kernel_l2=0.0)
    config["trainer"]["max_epochs"] = max_epochs
    config["trainer"]["callbacks"] = [{
        "class_path": "hyper.training.pruning.MagnitudePruning",
        "init_args": {"amount": amount, "prune_at_epoch": prune_at_epoch, "scope": scope},
    }]
    path.write_text(yaml.safe_dump(config))
    return path


def test_the_tested_checkpoint_is_pruned_and_counted_so(tmp_path):
    # "Best" = earliest: without the reset at pruning, the dense epoch-0 checkpoint would win.
    earliest = ["--checkpoint.monitor", "step", "--checkpoint.mode", "min"]
    assert main(["run", "--config", str(pruned_config(tmp_path)), *earliest]) == 0
    report = json.loads((only_run(tmp_path / "runs") / "report.json").read_text())
    checkpoint = torch.load(report["tested_checkpoint"], weights_only=False)
    assert checkpoint["global_step"] == 6  # fine-tuned after pruning, not the checkpoint of the epoch pruned after
    state = checkpoint["state_dict"]
    prunable = [w for k, w in state.items() if k.endswith("weight") and w.dim() in (2, 4)]  # conv, linear
    zeros = sum(int((w == 0).sum()) for w in prunable)
    total = sum(w.numel() for w in prunable)
    assert abs(zeros / total - 0.75) < 0.01  # the pruned network was tested, not a dense best
    for w in prunable:  # scope "layer": every layer keeps a quarter (to rounding)
        assert abs(int((w == 0).sum()) / w.numel() - 0.75) < 0.02
    assert report["pruned"] is True
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    nonzero = sum(int(w.count_nonzero()) for k, w in state.items() if not k.endswith(buffers))
    assert report["trainable_params"] == nonzero
    # tested alone, the checkpoint is counted as its run counted it (its record names the pruning)
    out = tmp_path / "tested"
    assert main(["test", "--ckpt_path", report["tested_checkpoint"], "--trainer.default_root_dir", str(out)]) == 0
    retested = json.loads((only_run(out) / "report.json").read_text())
    assert retested["pruned"] is True and retested["trainable_params"] == nonzero


def test_pruning_after_the_last_epoch_is_an_error(tmp_path, capsys):
    assert main(["fit", "--config", str(pruned_config(tmp_path, prune_at_epoch=3))]) == 2
    assert "prune_at_epoch must be below trainer.max_epochs (3), got 3" in capsys.readouterr().err


def test_global_scope_ranks_all_weights_together(tmp_path):
    assert main(["fit", "--config", str(pruned_config(tmp_path, scope="global", max_epochs=2, prune_at_epoch=0))]) == 0
    state = torch.load(only_run(tmp_path / "runs") / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    prunable = [w for k, w in state.items() if k.endswith("weight") and w.dim() in (2, 4)]
    fractions = [int((w == 0).sum()) / w.numel() for w in prunable]
    assert abs(sum(int((w == 0).sum()) for w in prunable) / sum(w.numel() for w in prunable) - 0.75) < 0.01
    assert max(fractions) - min(fractions) > 0.1  # layers lose different shares
