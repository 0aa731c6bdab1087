"""Distillation: the loss's algebra, the loss a student trains on, and a student trained against a
teacher checkpoint."""

import math
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from hyper.training import ImageClassifier
from hyper.training.cli import main
from hyper.training.distillation import Teacher, distillation_loss
from models import HyperResNet
from test_cli import NETWORK, TinyImages, only_run, write_config


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint of a HyperResNet-10-1 trained on TinyImages by ``train.py fit``."""
    folder = tmp_path_factory.mktemp("teacher")
    assert main(["fit", "--config", str(write_config(folder))]) == 0
    return next(only_run(folder / "runs").glob("checkpoints/last.ckpt"))


def test_loss_ends_and_scaling():
    torch.manual_seed(0)
    s, t, y = torch.randn(8, 5), torch.randn(8, 5), torch.randint(0, 5, (8,))
    assert torch.allclose(distillation_loss(s, t, y, temperature=3.0, weight=0.0), F.cross_entropy(s, y))
    assert distillation_loss(t, t, y, temperature=3.0, weight=1.0).abs() < 1e-6  # student = teacher
    # Soft term: T² · KL(p_t || p_s) at temperature T, by hand.
    T = 2.0
    p_t, log_p_s = F.softmax(t / T, -1), F.log_softmax(s / T, -1)
    by_hand = T * T * (p_t * (p_t.log() - log_p_s)).sum(-1).mean()
    assert math.isclose(distillation_loss(s, t, y, temperature=T, weight=1.0).item(), by_hand.item(), rel_tol=1e-5)


def test_the_student_trains_on_the_teachers_soft_targets(teacher: Path) -> None:
    torch.manual_seed(0)
    data = TinyImages(size=16, batch_size=16)  # one batch: the step sees every image
    data.setup("fit")
    images, labels = data.data.tensors
    student = HyperResNet(**NETWORK)
    with torch.no_grad():  # the step's own logits: train mode, batch statistics
        logits = student.train()(images)
    soft_targets = Teacher(teacher)(images)
    expected = distillation_loss(logits, soft_targets, labels, temperature=2.0, weight=0.7)
    assert abs(expected - F.cross_entropy(logits, labels)) > 0.1  # the teacher makes a difference

    module = ImageClassifier(network=student, teacher=str(teacher), distill_temperature=2.0, distill_weight=0.7)
    trainer = L.Trainer(
        max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
    )
    trainer.fit(module, datamodule=data)
    assert trainer.callback_metrics["train_loss"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_student_learns_from_a_teacher_checkpoint(teacher: Path, tmp_path: Path) -> None:
    student = write_config(tmp_path, embedding_dim=2)
    args = ["run", "--config", str(student), "--model.teacher", str(teacher), "--model.distill_temperature", "2"]
    assert main(args) == 0
    checkpoint = torch.load(next(only_run(tmp_path / "runs").glob("checkpoints/last.ckpt")), weights_only=True)
    # The teacher trains nothing and is not saved in the student's checkpoint.
    assert not any("teacher" in key for key in checkpoint["state_dict"])


def test_bad_teacher_settings(tmp_path, capsys):
    config = str(write_config(tmp_path))
    assert main(["fit", "--config", config, "--model.teacher", str(tmp_path / "none.ckpt")]) == 2
    assert f"error: --model.teacher {tmp_path / 'none.ckpt'}: no such checkpoint file" in capsys.readouterr().err
    assert main(["fit", "--config", config, "--model.distill_weight", "1.5"]) == 2
    assert "distill_weight must be in [0, 1]" in capsys.readouterr().err
