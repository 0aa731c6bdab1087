"""Distillation: the loss's algebra, and a student trained against a teacher checkpoint."""

import math

import pytest
import torch
import torch.nn.functional as F

from hyper.training.cli import main
from hyper.training.distillation import distillation_loss
from test_cli import only_run, write_config


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


def test_student_learns_from_a_teacher_checkpoint(tmp_path, capsys):
    (tmp_path / "teacher").mkdir()
    (tmp_path / "student").mkdir()
    assert main(["fit", "--config", str(write_config(tmp_path / "teacher"))]) == 0
    teacher = next(only_run(tmp_path / "teacher" / "runs").glob("checkpoints/last.ckpt"))
    student = write_config(tmp_path / "student", embedding_dim=2)
    args = ["run", "--config", str(student), "--model.teacher", str(teacher), "--model.distill_temperature", "2"]
    assert main(args) == 0
    checkpoint = torch.load(next(only_run(tmp_path / "student" / "runs").glob("checkpoints/last.ckpt")), weights_only=True)
    # The teacher trains nothing and is not saved in the student's checkpoint.
    assert not any("teacher" in key for key in checkpoint["state_dict"])


def test_bad_teacher_settings(tmp_path, capsys):
    config = str(write_config(tmp_path))
    assert main(["fit", "--config", config, "--model.teacher", str(tmp_path / "none.ckpt")]) == 2
    assert f"error: --model.teacher {tmp_path / 'none.ckpt'}: no such checkpoint file" in capsys.readouterr().err
    assert main(["fit", "--config", config, "--model.distill_weight", "1.5"]) == 2
    assert "distill_weight must be in [0, 1]" in capsys.readouterr().err
