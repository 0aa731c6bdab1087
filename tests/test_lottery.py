"""Lottery tickets: the rewind restores exactly the early-step values of the survivors (and the
rest of the state); rounds compound; each round's ticket is what is tested and counted."""

import json

import lightning as L
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import Callback

from hyper.training import ImageClassifier
from hyper.training.cli import main
from hyper.training.compression import LotteryTicket
from models import HyperResNet, WideResNet
from test_cli import TinyImages, only_run, write_config


class Recorder(Callback):
    """The network's state after step ``step`` and at the end of the first epoch."""

    def __init__(self, step):
        self.step, self.early, self.after_rewind = step, None, None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            self.early = {k: v.clone() for k, v in pl_module.network.state_dict().items()}
            self.early_optimizer = {i: {k: v.clone() for k, v in s.items()} for i, s in trainer.optimizers[0].state_dict()["state"].items()}

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 1:  # runs after LotteryTicket's (callback order): pruned and rewound
            self.after_rewind = {k: v.clone() for k, v in pl_module.network.state_dict().items()}
            self.optimizer = {i: {k: v.clone() for k, v in s.items()} for i, s in trainer.optimizers[0].state_dict()["state"].items()}
            self.lr = trainer.optimizers[0].param_groups[0]["lr"]


@pytest.mark.parametrize("network", [WideResNet(depth=10, num_classes=4), HyperResNet(depth=10, num_classes=4, embedding_dim=4, hidden_dim=8)], ids=["plain", "hyper"])
def test_rewind_restores_the_survivors_early_values_exactly(network, tmp_path):
    torch.manual_seed(0)
    recorder = Recorder(step=1)
    trainer = L.Trainer(
        max_epochs=2, callbacks=[LotteryTicket(amount=0.5, rounds=1, rewind_step=1), recorder], logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        default_root_dir=tmp_path,
    )
    trainer.fit(ImageClassifier(network=network, schedule="cosine"), datamodule=TinyImages())
    early, after = recorder.early, recorder.after_rewind
    masks = {k.removesuffix("_mask"): v for k, v in after.items() if k.endswith("_mask")}
    assert masks and all(0.45 < 1 - m.float().mean() < 0.55 for m in masks.values())
    for name, mask in masks.items():
        survivors = mask.bool()
        assert torch.equal(after[f"{name}_orig"][survivors], early[name][survivors])  # exactly the step-1 values
    for name, tensor in after.items():
        if not name.endswith(("_mask", "_orig")):
            assert torch.equal(tensor, early[name]), name  # norms, biases, statistics rewound too
    for index, state in recorder.early_optimizer.items():  # Adam's moments as they were after step 1
        assert torch.equal(recorder.optimizer[index]["exp_avg"], state["exp_avg"])
    lrs = 0.001 * (1 + torch.cos(torch.tensor(torch.pi * 1 / 2))) / 2  # cosine over one phase of 2 steps, at step 1
    assert recorder.lr == pytest.approx(lrs.item())


def test_rounds_compound_and_the_ticket_is_tested(tmp_path):
    path = write_config(tmp_path)
    config = yaml.safe_load(path.read_text())
    config["model"]["init_args"].update(kernel_l2=0.0, network={"class_path": "models.WideResNet", "init_args": {"depth": 10, "num_classes": 4}})
    config["trainer"]["max_epochs"] = 5  # more than the 3 phases of one epoch: the run stops after the last
    config["trainer"]["callbacks"] = [{"class_path": "hyper.training.compression.LotteryTicket", "init_args": {"amount": 0.5, "rounds": 2, "rewind_step": 1, "phase_epochs": 1}}]
    path.write_text(yaml.safe_dump(config))
    earliest = ["--checkpoint.monitor", "step", "--checkpoint.mode", "min"]  # without forgetting, a dense best would win
    assert main(["run", "--config", str(path), *earliest]) == 0
    report = json.loads((only_run(tmp_path / "runs") / "report.json").read_text())
    checkpoint = torch.load(report["tested_checkpoint"], weights_only=False)
    assert checkpoint["global_step"] == 6  # the retrained last ticket, not the rewound one before it
    state = checkpoint["state_dict"]
    weights = [v for k, v in state.items() if v.dim() >= 2]
    zeros = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    assert abs(zeros - 0.75) < 0.01  # 1 - (1 - 0.5)^2
    assert report["pruned"] and report["compression_ratio"] > 3 and report["epochs"] == 3
    assert report["compression_bytes"] < report["compression_ratio"]  # the sparse layout's bitmask costs
    out = tmp_path / "tested"  # tested alone, the ticket is counted as its run counted it
    assert main(["test", "--ckpt_path", report["tested_checkpoint"], "--trainer.default_root_dir", str(out)]) == 0
    retested = json.loads((only_run(out) / "report.json").read_text())
    assert retested["pruned"] and retested["trainable_params"] == report["trainable_params"]


@pytest.mark.parametrize(
    "args, max_epochs, says",
    [
        ({"amount": 1.0}, 3, "amount must be a fraction in (0, 1), got 1.0"),
        ({"amount": 0.5, "rounds": 0}, 3, "rounds must be an integer >= 1, got 0"),
        ({"amount": 0.5, "rounds": 2}, 4, "trainer.max_epochs must be a multiple of rounds + 1 = 3"),
        ({"amount": 0.5, "rounds": 2, "phase_epochs": 2}, 4, "trainer.max_epochs must be at least (rounds + 1) × phase_epochs = 6, got 4"),
        ({"amount": 0.5, "rounds": 1, "rewind_step": 4}, 2, "rewind_step must be below one phase's 2 steps, got 4"),
    ],
)
def test_bad_arguments(tmp_path, capsys, args, max_epochs, says):
    path = write_config(tmp_path)
    config = yaml.safe_load(path.read_text())
    config["trainer"]["max_epochs"] = max_epochs
    config["trainer"]["callbacks"] = [{"class_path": "hyper.training.compression.LotteryTicket", "init_args": args}]
    path.write_text(yaml.safe_dump(config))
    assert main(["fit", "--config", str(path)]) == 2
    assert says in capsys.readouterr().err
