"""Every mistake a user can make is one ``error:`` line naming the culprit, a non-zero exit, and
nothing half-written: no run folder, no results row, no results folder.

Each case runs the real command line in this process (``main(args)``) on tiny data made here:
a HyperResNet-10-1 config on random images (tests/test_cli.py), a checkpoint that config wrote,
broken copies of it, broken files of every kind the commands read.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
import yaml

from hyper.training.cli import main
from test_cli import write_config
from test_language_model import write_config as write_lm_config

pytestmark = pytest.mark.usefixtures("one_thread")


class Planted:
    """Unpickling this runs code: it opens (creates) ``marker``. A checkpoint must never do that."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return open, (str(self.marker), "w")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A trained checkpoint, broken copies of it, and broken data, sweep and config files."""
    root = tmp_path_factory.mktemp("files")
    config = write_config(root)
    assert main(["fit", "--config", str(config)]) == 0
    (root / "lm").mkdir()
    lm_config = write_lm_config(root / "lm")
    good = next((root / "runs").glob("*/version_0/checkpoints/last.ckpt"))
    raw = good.read_bytes()
    paths = {"config": config, "lm_config": lm_config, "good": good, "marker": root / "planted-code-ran"}
    writes = {
        "empty.ckpt": b"",
        "truncated.ckpt": raw[: len(raw) // 2],
        "random.ckpt": os.urandom(4096),
        "binary.txt": bytes(range(256)) * 8,
        "empty.txt": b"",
        "empty.yaml": b"",
        "comments.yaml": b"# nothing set yet\n",
        "scalar.yaml": b"hello\n",
        "list.yaml": b"- a\n- b\n",
        "broken.yaml": b"trainer:\n  max_epochs: [1, 2\nmodel: {}\n",
        "a_file": b"not a folder",
    }
    for name, content in writes.items():
        (root / name).write_bytes(content)
        paths[name] = root / name
    nan_lr = yaml.safe_load(config.read_text())
    nan_lr["model"]["init_args"]["optimizer"] = {"class_path": "torch.optim.SGD", "init_args": {"lr": float("nan")}}
    paths["nan_lr.yaml"] = root / "nan_lr.yaml"
    paths["nan_lr.yaml"].write_text(yaml.safe_dump(nan_lr))  # lr: .nan
    crafted = root / "crafted.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"x": Planted(paths["marker"])}}, crafted)
    paths["crafted.ckpt"] = crafted
    (root / "folder.ckpt").mkdir()
    paths["folder.ckpt"] = root / "folder.ckpt"
    ptb = root / "ptb"
    ptb.mkdir()
    (ptb / "ptb.char.train.txt").write_text("a _ b\n" * 50)
    paths["ptb_file"] = ptb / "ptb.char.train.txt"
    paths["cifar"] = _cifar_with_a_truncated_test_file(root / "cifar")
    return paths


def _cifar_with_a_truncated_test_file(root: Path) -> Path:
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    record = bytes([3]) + bytes(3072)
    for i in range(1, 6):
        (folder / f"data_batch_{i}.bin").write_bytes(record * 4)
    (folder / "test_batch.bin").write_bytes(record * 4 + record[:1000])  # cut mid-record
    return root


def _sweep(folder: Path, config: Path, text: str | None = None, **spec: object) -> Path:
    path = folder / "sweep.yaml"
    if text is None:
        base = {"base": str(config), "overrides": {"model.init_args.kernel_l2": 0.0}}
        text = yaml.safe_dump({**base, **spec})
    path.write_text(text)
    return path


HYPER = "model.init_args.network.init_args.embedding_dim"

# (id, arguments, what the one line must say). ``{name}`` is one of the ``files``; ``{tmp}`` the
# case's own folder; ``{config}`` the tiny config; ``{sweep:...}`` a sweep file written for the case.
CASES = [
    # values in a config or on the command line
    ("embedding_dim 0", ["fit", "-c", "{config}", "--model.network.embedding_dim", "0"], ["embedding_dim must be a positive integer"]),
    ("depth 11", ["fit", "-c", "{config}", "--model.network.depth", "11"], ["depth must be of the form 6n + 4"]),
    ("source beside knobs", ["fit", "-c", "{config}", "--model.network.source", "hyper.LowRank"], ["embedding_dim", "a knob of the source, set it inside source="]),
    ("in_channels", ["fit", "-c", "{config}", "--model.network.in_channels", "1"], ["in_channels"]),
    ("num_classes", ["fit", "-c", "{config}", "--model.network.num_classes", "3"], ["num_classes"]),
    ("max_epochs x", ["fit", "-c", "{config}", "--trainer.max_epochs", "x"], ["trainer.max_epochs"]),
    ("schedule", ["fit", "-c", "{config}", "--model.schedule", "linear"], ["model.schedule"]),
    ("unknown option", ["fit", "-c", "{config}", "--model.nonsense", "1"], ["nonsense"]),
    ("max_epochs 0", ["run", "-c", "{config}", "--trainer.max_epochs", "0"], ["trainer.max_epochs is 0", "nothing would be trained"]),
    ("max_steps 0", ["fit", "-c", "{config}", "--trainer.max_steps", "0"], ["trainer.max_steps is 0"]),
    ("no train batches", ["fit", "-c", "{config}", "--trainer.limit_train_batches", "0"], ["limit_train_batches is 0"]),
    ("endless cosine", ["fit", "-c", "{config}", "--trainer.max_epochs", "-1"], ["needs a finite run"]),
    ("threads 0", ["fit", "-c", "{config}", "--threads", "0"], ["threads must be a positive integer"]),
    ("batch_size 0", ["fit", "-c", "{config}", "--data.batch_size", "0"], ["batch_size"]),
    ("label_smoothing", ["fit", "-c", "{config}", "--model.label_smoothing", "1.5"], ["label_smoothing must be in [0, 1)"]),
    ("distill_weight", ["fit", "-c", "{config}", "--model.distill_weight", "1.5"], ["distill_weight must be in [0, 1]"]),
    ("lr nan", ["fit", "-c", "{config}", "--model.optimizer.lr", "nan"], ["--model.optimizer.lr: the learning rate must be a finite positive number, got nan"]),
    ("lr nan, init_args", ["fit", "-c", "{config}", "--model.optimizer.init_args.lr", "nan"], ["--model.optimizer.init_args.lr: the learning rate must be a finite positive number, got nan"]),
    ("lr inf", ["fit", "-c", "{config}", "--model.optimizer.lr=inf"], ["--model.optimizer.lr: the learning rate must be a finite positive number, got inf"]),
    ("lr 0", ["fit", "-c", "{config}", "--model.optimizer.lr", "0"], ["learning rate must be a finite positive number, got 0"]),
    ("lr -1", ["fit", "-c", "{config}", "--model.optimizer.lr", "-1"], ["learning rate must be a finite positive number, got -1"]),
    ("lr nan, no subcommand", ["-c", "{config}", "--model.optimizer.lr", "nan"], ["learning rate must be a finite positive number, got nan"]),
    ("lr .nan in a config", ["fit", "-c", "{nan_lr.yaml}"], ["model.optimizer.lr: the learning rate must be a finite positive number, got nan"]),
    ("optimizer weight_decay", ["fit", "-c", "{config}", "--model.optimizer.weight_decay", "abc"], ["model.optimizer.weight_decay", "float", "abc"]),
    # config files
    ("config missing", ["fit", "-c", "{tmp}/nope.yaml"], ["--config", "nope.yaml: no such file"]),
    ("preset missing", ["--config", "no_such_preset"], ["--config no_such_preset: no such file, nor a preset"]),
    ("config broken YAML", ["fit", "-c", "{broken.yaml}"], ["broken.yaml line 3", "not valid YAML"]),
    ("config a list", ["fit", "-c", "{list.yaml}"], ["list.yaml must be a mapping"]),
    ("config empty", ["fit", "-c", "{empty.yaml}"], ["--config", "empty.yaml is empty", "mapping of options"]),
    ("config empty, no subcommand", ["--config", "{empty.yaml}"], ["--config", "empty.yaml is empty"]),
    ("config only comments", ["fit", "-c", "{comments.yaml}"], ["comments.yaml is empty"]),
    ("config a scalar", ["fit", "-c", "{scalar.yaml}"], ["scalar.yaml must be a mapping", "got a str"]),
    ("config a folder", ["fit", "-c", "{tmp}"], ["is a directory"]),
    ("no model", ["fit", "--data", "test_cli.TinyImages"], ["no model to fit"]),
    # checkpoints: missing, a folder, empty, truncated, random bytes, planted code
    ("test: missing ckpt", ["test", "--ckpt_path", "{tmp}/none.ckpt"], ["--ckpt_path", "none.ckpt: no such checkpoint file"]),
    ("test: folder", ["test", "--ckpt_path", "{folder.ckpt}"], ["folder.ckpt is a directory"]),
    ("test: empty ckpt", ["test", "--ckpt_path", "{empty.ckpt}"], ["empty.ckpt is not a readable checkpoint"]),
    ("test: truncated ckpt", ["test", "--ckpt_path", "{truncated.ckpt}"], ["truncated.ckpt is not a readable checkpoint"]),
    ("test: random ckpt", ["test", "--ckpt_path", "{random.ckpt}"], ["random.ckpt is not a readable checkpoint"]),
    ("test: planted code", ["test", "--ckpt_path", "{crafted.ckpt}"], ["crafted.ckpt holds Python objects", "refused"]),
    ("fit: empty ckpt", ["fit", "-c", "{config}", "--ckpt_path", "{empty.ckpt}"], ["empty.ckpt is not a readable checkpoint"]),
    ("fit: truncated ckpt", ["fit", "-c", "{config}", "--ckpt_path", "{truncated.ckpt}"], ["truncated.ckpt is not a readable"]),
    ("fit: random ckpt", ["fit", "-c", "{config}", "--ckpt_path", "{random.ckpt}"], ["random.ckpt is not a readable"]),
    ("fit: planted code", ["fit", "-c", "{config}", "--ckpt_path", "{crafted.ckpt}"], ["crafted.ckpt holds Python objects"]),
    ("fit: resume without config", ["fit", "--ckpt_path", "{good}"], ["to resume", "give its config too: fit --config", "config.yaml"]),
    ("fit: missing ckpt", ["fit", "-c", "{config}", "--ckpt_path", "{tmp}/none.ckpt"], ["none.ckpt: no such checkpoint"]),
    ("teacher missing", ["fit", "-c", "{config}", "--model.teacher", "{tmp}/none.ckpt"], ["--model.teacher", "no such checkpoint"]),
    ("teacher empty", ["fit", "-c", "{config}", "--model.teacher", "{empty.ckpt}"], ["--model.teacher", "not a readable"]),
    ("teacher truncated", ["fit", "-c", "{config}", "--model.teacher", "{truncated.ckpt}"], ["--model.teacher", "truncated.ckpt"]),
    ("teacher random", ["fit", "-c", "{config}", "--model.teacher", "{random.ckpt}"], ["--model.teacher", "random.ckpt"]),
    ("teacher planted code", ["fit", "-c", "{config}", "--model.teacher", "{crafted.ckpt}"], ["--model.teacher", "holds Python objects"]),
    ("teacher folder", ["fit", "-c", "{config}", "--model.teacher", "{folder.ckpt}"], ["--model.teacher", "is a directory"]),
    ("sample: empty ckpt", ["sample", "--ckpt_path", "{empty.ckpt}"], ["empty.ckpt is not a readable"]),
    ("sample: truncated ckpt", ["sample", "--ckpt_path", "{truncated.ckpt}"], ["truncated.ckpt is not a readable"]),
    ("sample: random ckpt", ["sample", "--ckpt_path", "{random.ckpt}"], ["random.ckpt is not a readable"]),
    ("sample: planted code", ["sample", "--ckpt_path", "{crafted.ckpt}"], ["holds Python objects"]),
    ("sample: image model", ["sample", "--ckpt_path", "{good}"], ["holds no vocabulary"]),
    ("sample: temperature inf", ["sample", "--ckpt_path", "{good}", "--temperature", "inf"], ["temperature must be a positive finite"]),
    ("sample: temperature nan", ["sample", "--ckpt_path", "{good}", "--temperature", "nan"], ["temperature must be a positive finite"]),
    ("sample: length -1", ["sample", "--ckpt_path", "{good}", "--length", "-1"], ["length must be a non-negative integer"]),
    # output folders
    ("runs under a file", ["fit", "-c", "{config}", "--trainer.default_root_dir", "{a_file}/runs"], ["--trainer.default_root_dir", "a_file is a file, not a folder"]),
    ("sweep --out under a file", ["sweep", "--config", "{sweep:ok}", "--out", "{a_file}/out"], ["sweep --out", "a_file is a file"]),
    # data files
    ("text: binary", ["fit", "-c", "{lm_config}", "--data.path", "{binary.txt}"], ["binary.txt is not UTF-8 text", "--data.format bytes"]),
    ("text: empty", ["fit", "-c", "{lm_config}", "--data.path", "{empty.txt}"], ["empty.txt is empty"]),
    ("text: a PTB file", ["fit", "-c", "{lm_config}", "--data.format", "ptb", "--data.path", "{ptb_file}"], ["is one of the three PTB files", "pass"]),
    ("text: too short", ["fit", "-c", "{lm_config}", "--data.path", "{ptb_file}", "--data.batch_size", "64"], ["the train split of", "ptb.char.train.txt", "fewer than seq_len + 1"]),
    ("cifar: truncated test file", ["run", "-c", "{config}", "--data", "hyper.data.CIFAR10DataModule", "--data.data_dir", "{cifar}", "--data.val_size", "2", "--model.network.num_classes", "10"], ["test_batch.bin is", "truncated"]),
    ("cifar: missing files", ["fit", "-c", "{config}", "--data", "hyper.data.CIFAR10DataModule", "--data.data_dir", "{tmp}/none", "--model.network.num_classes", "10"], ["CIFAR-10 binary files not found"]),
    ("image model, text data", ["fit", "-c", "{config}", "--data", "hyper.data.CharDataModule"], ["ImageClassifier needs image data", "CharDataModule"]),
    ("text model, image data", ["fit", "-c", "{lm_config}", "--data", "test_cli.TinyImages"], ["vocab_size must be a positive integer, got None"]),
    # sweeps
    ("sweep: broken YAML", ["sweep", "--config", "{sweep:text=methods: [\n  - {name: a\n}"], ["sweep.yaml line", "not valid YAML"]),
    ("sweep: second point bad", ["sweep", "--config", "{sweep:bad_second}"], ["sweep point hyper(embedding_dim=0)", "embedding_dim must be a positive integer"]),
    ("sweep: unknown key", ["sweep", "--config", "{sweep:text=methods: [{name: a}]\nseed: 1\n}"], ["unknown sweep keys ['seed']"]),
    ("sweep: missing base", ["sweep", "--config", "{sweep:text=base: nowhere.yaml\nmethods: [{name: a}]\n}"], ["base config", "nowhere.yaml does not exist"]),
    ("sweep: bad seeds", ["sweep", "--config", "{sweep:text=methods: [{name: a}]\nseeds: x\n}"], ["seeds must be a non-empty list"]),
    ("sweep: no --config", ["sweep"], ["train.py sweep needs --config"]),
    ("sweep: bad shard", ["sweep", "--config", "{sweep:ok}", "--shard", "3/2"], ["shard must satisfy"]),
    ("sweep: unknown option", ["sweep", "--config", "{sweep:ok}", "--outt", "x"], ["train.py sweep does not take --outt"]),
    ("plot: no results", ["plot", "{tmp}"], ["no results file"]),
]


def expand(arg: str, files: dict[str, Path], tmp: Path) -> str:
    if arg.startswith("{sweep:"):
        kind = arg[len("{sweep:") : -1]
        if kind.startswith("text="):
            return str(_sweep(tmp, files["config"], kind[len("text=") :]))
        points = {"ok": [1], "bad_second": [2, 0]}[kind]
        return str(_sweep(tmp, files["config"], methods=[{"name": "hyper", "vary": {HYPER: points}}]))
    names = {"config": files["config"], "tmp": tmp, **files}
    for name, path in names.items():
        arg = arg.replace("{" + name + "}", str(path))
    return arg


@pytest.mark.parametrize(("args", "says"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_one_line_and_nothing_written(
    files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture,
    args: list[str], says: list[str],
) -> None:
    monkeypatch.chdir(tmp_path)  # where a default runs/ or results/ would appear
    args = [expand(arg, files, tmp_path) for arg in args]
    if args[0] in ("fit", "run", "test") and not any(a.startswith("--trainer.default_root_dir") for a in args):
        args += ["--trainer.default_root_dir", str(tmp_path / "runs")]
    before = set(tmp_path.rglob("*"))
    capfd.readouterr()
    assert main(args) == 2
    out, err = capfd.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert all(s in lines[0] for s in says), lines[0]
    assert "Traceback" not in out
    written = {p for p in set(tmp_path.rglob("*")) - before}
    assert not written, sorted(map(str, written))  # no run folder, no results, nothing
    assert not files["marker"].exists(), "unpickling a checkpoint ran planted code"


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 40


def test_planted_code_would_run_outside_weights_only(files: dict[str, Path], tmp_path: Path) -> None:
    """The crafted checkpoint is a real threat: an ordinary unpickling runs it."""
    marker = tmp_path / "ran"
    path = tmp_path / "crafted.ckpt"
    torch.save({"state_dict": {}, "x": Planted(marker)}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    assert not marker.exists()
    torch.load(path, weights_only=False)
    assert marker.exists()


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc, where no one can create a file")
@pytest.mark.parametrize("command", [["fit", "-c", "{config}", "--trainer.default_root_dir"], ["sweep", "--config", "{sweep:ok}", "--out"]])
def test_a_folder_that_cannot_be_written_is_one_line(
    files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture,
    command: list[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    args = [expand(arg, files, tmp_path) for arg in command] + ["/proc/hyper-runs"]
    capfd.readouterr()
    assert main(args) == 2
    lines = capfd.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "/proc/hyper-runs: cannot write in /proc" in lines[0], lines
