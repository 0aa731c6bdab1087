"""Compressing character language models: a teacher's soft targets in the student's loss, and
magnitude pruning of the recurrent matrices."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from hyper.data import CharDataModule
from hyper.training import CharLanguageModel
from hyper.training.cli import main
from hyper.training.distillation import Teacher, distillation_loss
from models import CharRNN

TEXT = "the cat sat on the mat; a rat ate the hat. " * 8
pytestmark = pytest.mark.usefixtures("one_thread")


def write_config(folder: Path, *, core: str = "ln_lstm", text: str = TEXT, **trainer: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    corpus = folder / "corpus.txt"
    corpus.write_text(text)
    config = {
        "seed_everything": 0,
        "trainer": {
            "max_steps": 4, "val_check_interval": 2, "check_val_every_n_epoch": None,
            "default_root_dir": str(folder / "runs"), "enable_progress_bar": False,
            "enable_model_summary": False, **trainer,
        },
        "report": {"unit": "tokens", "count": "elements"},
        "model": {
            "class_path": "hyper.training.CharLanguageModel",
            "init_args": {"network": {"class_path": "models.CharRNN", "init_args": {"core": core, "hidden_size": 8, "embedding_size": 4}}},
        },
        "data": {
            "class_path": "hyper.data.CharDataModule",
            "init_args": {"path": str(corpus), "batch_size": 2, "seq_len": 8, "split": [0.6, 0.2, 0.2]},
        },
    }
    path = folder / "lm.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def trained_checkpoint(folder: Path, **kwargs: object) -> Path:
    assert main(["fit", "--config", str(write_config(folder, **kwargs))]) == 0
    (checkpoint,) = (folder / "runs").glob("*/version_*/checkpoints/last.ckpt")
    return checkpoint


@pytest.fixture(scope="module")
def teacher_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trained_checkpoint(tmp_path_factory.mktemp("teacher"), core="hyper_lstm")


def test_the_loss_is_the_distillation_loss_on_the_teachers_carried_soft_targets(teacher_checkpoint: Path, tmp_path: Path) -> None:
    data = CharDataModule(path=str(tmp_path / "c.txt"), batch_size=2, seq_len=8, split=(0.6, 0.2, 0.2))
    (tmp_path / "c.txt").write_text(TEXT)
    data.setup("fit")
    torch.manual_seed(1)
    student = CharLanguageModel(network=CharRNN(vocab_size=data.vocab_size, core="ln_lstm", hidden_size=8, embedding_size=4),
                                teacher=str(teacher_checkpoint), distill_temperature=2.0, distill_weight=0.7)
    student.teacher.load(vocab=data.vocab)
    reference = Teacher(teacher_checkpoint)  # a second copy, read the same batches by hand
    batches = iter(data.train_dataloader())
    for _ in range(2):  # the second batch's soft targets come from a teacher that has read the first
        tokens, targets = next(batches)
        logits = student.network(tokens)[0]
        loss = student.fit_loss(tokens, logits, targets)
        teacher_logits = reference(tokens)
        expected = distillation_loss(logits.flatten(0, 1), teacher_logits.flatten(0, 1), targets.flatten(), temperature=2.0, weight=0.7)
        torch.testing.assert_close(loss, expected)
        assert not torch.allclose(loss, F.cross_entropy(logits.flatten(0, 1), targets.flatten()))
    restarted = Teacher(teacher_checkpoint)(tokens)
    assert not torch.allclose(restarted, teacher_logits)  # carrying the state mattered


def test_distil_from_the_command_line(teacher_checkpoint: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path)
    assert main(["fit", "--config", str(config), "--model.teacher", str(teacher_checkpoint)]) == 0
    (checkpoint,) = (tmp_path / "runs").glob("*/version_*/checkpoints/last.ckpt")
    state = torch.load(checkpoint, weights_only=False)["state_dict"]
    assert state and not any("teacher" in key for key in state)  # the teacher is neither trained nor saved


def test_a_teacher_on_another_vocabulary_is_one_line(teacher_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = write_config(tmp_path, text="ABCDEFGH abcdefgh 0123. " * 12)
    assert main(["fit", "--config", str(config), "--model.teacher", str(teacher_checkpoint)]) == 2
    assert "was trained on another vocabulary" in capsys.readouterr().err


@pytest.mark.parametrize("core, names", [("ln_lstm", ("weight_x", "weight_h")), ("lstm", ("weight_ih_l0", "weight_hh_l0"))])
def test_magnitude_pruning_prunes_the_recurrent_matrices(core: str, names: tuple[str, ...], tmp_path: Path) -> None:
    pruning = {"class_path": "hyper.training.pruning.MagnitudePruning", "init_args": {"amount": 0.75, "prune_at_epoch": 0}}
    config = write_config(tmp_path, core=core, max_steps=-1, max_epochs=2, val_check_interval=None,
                          check_val_every_n_epoch=1, callbacks=[pruning])
    assert main(["run", "--config", str(config)]) == 0
    (run,) = (tmp_path / "runs").glob("*/version_*")
    report = json.loads((run / "report.json").read_text())
    state = torch.load(report["tested_checkpoint"], weights_only=False)["state_dict"]
    matrices = [w for key, w in state.items() if key.rsplit(".", 1)[-1] in names]
    assert len(matrices) == 2
    for w in matrices:
        assert abs(int((w == 0).sum()) / w.numel() - 0.75) < 0.02
    assert report["pruned"] is True and report["compression_ratio"] > 1.5
