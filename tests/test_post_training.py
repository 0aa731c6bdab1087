"""A trained network compressed into a hypernetwork after training: reconstruction (the source
regressed onto the trained kernels), then distillation (soft targets and block outputs), as
``CompressInto`` runs them; and the committed digits comparison in docs/compression.md."""

import csv

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hyper import Hyper, wrap
from hyper.compression.fit import compress_into, reconstruction_error, trained_kernels
from hyper.sweeps import read_rows, summarize, summary_table
from hyper.training import ImageClassifier
from hyper.training.compression import CompressInto
from hyper.training.compression.features import FeatureMatching, block_names
from models import HyperResNet, WideResNet
from test_cli import TinyImages
from test_recompress import HYPER, run_with

from doc_text import RESULTS, doc, markdown_table, section

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {"depth": 10, "width": 1, "num_classes": 4, "in_channels": 3}


# reconstruction ------------------------------------------------------------------------------


@pytest.mark.parametrize("error", ["total", "per_layer"])
def test_the_reconstruction_error_falls_over_the_steps(error):
    torch.manual_seed(0)
    trained = WideResNet(**TINY)  # kernels no 4-dim embedding makes exactly
    student = HyperResNet(**TINY, embedding_dim=4, hidden_dim=8)
    errors = compress_into(student, trained, steps=100, lr=0.02, error=error, cosine=True)
    assert len(errors) == 101 and errors[-1] < 0.7 * errors[0]
    assert max(errors[50:]) < errors[25]  # still falling in the annealed second half
    kernels = trained_kernels(trained, student)
    assert reconstruction_error(student, kernels, error=error).item() == pytest.approx(errors[-1], rel=1e-4)


def test_the_per_layer_error_counts_every_layer_alike():
    torch.manual_seed(0)
    student = HyperResNet(**TINY, embedding_dim=4, hidden_dim=8)
    kernels = {layer.name: torch.randn(layer.shape) for layer in student.layers}
    generated = student.generated_weights()
    each = [((generated[n] - w).square().sum() / w.square().sum()).item() for n, w in kernels.items()]
    assert reconstruction_error(student, kernels, error="per_layer").item() == pytest.approx(sum(each) / len(each), rel=1e-5)


# feature-map distillation --------------------------------------------------------------------


def test_the_feature_hooks_give_the_gradients_of_the_feature_loss_added_to_the_loss():
    torch.manual_seed(0)
    teacher = WideResNet(**TINY).eval()
    student = HyperResNet(**TINY, embedding_dim=4, hidden_dim=8)
    names = block_names(student)
    assert names == ["stages.0.0", "stages.1.0", "stages.2.0"]
    images, labels = torch.randn(8, 3, 8, 8), torch.randint(0, 4, (8,))

    features = FeatureMatching(student=student, teacher=teacher, names=names, weight=0.5)
    features.teacher_features(images)
    F.cross_entropy(student(images), labels).backward()
    hooked = {n: p.grad.clone() for n, p in student.named_parameters()}
    features.remove()

    student.zero_grad()
    mine, theirs = _outputs(student.target, names), _outputs(teacher, names)
    with torch.no_grad():
        teacher(images)
    logits = student(images)
    feature_loss = sum(F.mse_loss(mine[n], theirs[n]) / theirs[n].square().mean() for n in names) / len(names)
    (F.cross_entropy(logits, labels) + 0.5 * feature_loss).backward()
    for name, parameter in student.named_parameters():
        torch.testing.assert_close(hooked[name], parameter.grad, rtol=1e-4, atol=1e-7)


def _outputs(network: nn.Module, names: list[str]) -> dict:
    kept = {}
    modules = dict(network.named_modules())
    for name in names:
        modules[name].register_forward_hook(lambda m, i, o, name=name: kept.__setitem__(name, o))
    return kept


# the two phases in a run ---------------------------------------------------------------------


def mlp() -> nn.Sequential:
    """A network not written here: an nn.Sequential of linear layers on TinyImages' 3×8×8 images."""
    return nn.Sequential(nn.Flatten(), nn.Linear(192, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 4))


@torch.no_grad()
def accuracy(network: nn.Module) -> float:
    """On 512 images the run never saw (TinyImages of another seed)."""
    held_out = TinyImages(size=512, seed=1)
    held_out.setup("test")
    images, labels = held_out.data.tensors
    return (network.eval()(images).argmax(-1) == labels).float().mean().item()


def test_reconstruct_then_distil_keeps_the_teachers_accuracy_on_a_module_not_written_here(tmp_path):
    torch.manual_seed(0)
    data = TinyImages(size=2048, batch_size=64)
    student = wrap(mlp(), Hyper(embedding_dim=8, hidden_dim=16))  # the two 64-wide layers' tiles: 16 in × 16 out
    route = CompressInto(
        network=student, at_epoch=3, fit_steps=100, fit_error="per_layer", fit_schedule="cosine",
        distill=True, feature_weight=0.1, feature_modules=["3"],
    )
    trainer = L.Trainer(
        max_epochs=8, callbacks=[route], default_root_dir=tmp_path, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
    )
    module = ImageClassifier(network=mlp(), optimizer=lambda p: torch.optim.Adam(p, lr=0.01))
    trainer.fit(module, datamodule=data)
    teacher = module.teacher.network
    assert module.network is student and route.fit_errors[-1] < route.fit_errors[0]
    assert route.features is None and not student.target[3]._forward_hooks  # the hooks leave with the fit
    # The bound: on held-out images, the student within 5 points of the network it came from.
    assert accuracy(teacher) > 0.8
    assert accuracy(student) >= accuracy(teacher) - 0.05


def test_the_run_logs_the_fit_and_the_feature_loss(tmp_path):
    callback = {
        "class_path": "hyper.training.compression.CompressInto",
        "init_args": {
            "network": HYPER, "at_epoch": 0, "fit_steps": 20, "fit_error": "per_layer", "fit_schedule": "cosine",
            "distill": True, "feature_weight": 0.5,
        },
    }
    code, report, run = run_with(tmp_path, callback)
    assert code == 0 and report["model"] == "HyperResNet"
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    fit = [r for r in rows if r.get("fit_error_end")]
    assert float(fit[0]["fit_error_end"]) < float(fit[0]["fit_error_start"])
    assert [float(r["train_feature_loss"]) for r in rows if r.get("train_feature_loss")]


@pytest.mark.parametrize(
    "arguments, says",
    [
        ({"fit_error": "cosine"}, "fit_error must be one of total, per_layer, got 'cosine'"),
        ({"fit_schedule": "linear"}, "fit_schedule must be constant or cosine, got 'linear'"),
        ({"fit_lr": 0.0}, "fit_lr must be positive, got 0.0"),
        ({"feature_weight": -1.0}, "feature_weight must be a non-negative number, got -1.0"),
        ({"feature_weight": 1.0, "at_epoch": None, "fit_steps": 0}, "feature_weight matches a trained network's features: set at_epoch"),
        ({"feature_weight": 1.0, "feature_modules": ["stages.9"]}, "feature_modules: the student network has no module 'stages.9'"),
    ],
)
def test_a_bad_argument_is_one_clear_line(arguments, says):
    given = {"network": HyperResNet(**TINY, embedding_dim=4, hidden_dim=8), "at_epoch": 0, "fit_steps": 5, **arguments}
    with pytest.raises(ValueError) as raised:
        CompressInto(**given)
    assert str(raised.value) == says and "\n" not in says


def test_a_bad_argument_from_the_command_line_is_one_line(tmp_path, capsys):
    callback = {"class_path": "hyper.training.compression.CompressInto", "init_args": {"network": HYPER, "at_epoch": 0, "feature_weight": -1.0}}
    code, _, _ = run_with(tmp_path, callback)
    assert code == 2
    err = capsys.readouterr().err
    assert "feature_weight must be a non-negative number, got -1.0" in err and "Traceback" not in err


def test_feature_modules_are_needed_for_a_plain_student():
    with pytest.raises(ValueError, match="^feature_modules must be given for a student that is not a generated network, got Sequential$"):
        CompressInto(network=mlp(), at_epoch=0, feature_weight=1.0)


# the committed comparison --------------------------------------------------------------------


def post_training_section(rows: list[dict]) -> str:
    """docs/compression.md's post-training section: the sweep's summary, then each point's
    training steps and whether its mean error is within 1 point of plain's."""
    entries = summarize(rows, "test_acc")
    (plain,) = [e.cost for e in entries if e.method == "plain"]
    table = [
        [e.method, ", ".join(f"{k}={v}" for k, v in e.knobs.items()), f"{_steps(rows, e):,}", f"{e.cost - plain:+.2f}",
         "yes" if e.cost <= plain + 1.0 else "no"]
        for e in entries
    ]
    steps = markdown_table(["method", "knobs", "training steps", "error − plain's (points)", "within 1 point"], ["---", "---", "---:", "---:", ":---:"], table)
    return f"{summary_table(entries, 'test_acc')}\n\n{steps}"


def _steps(rows: list[dict], entry) -> int:  # noqa: ANN001
    (steps,) = {r["steps"] for r in rows if r["method"] == entry.method and r["knobs"] == entry.knobs}
    return steps


# docs/compression.md's section -> (the committed rows, the seeds each point has at least)
COMPARISONS = {
    "post-training": ("digits_post_training.jsonl", 3),
    "post-training-cifar": ("cifar10_post_training.jsonl", 2),
}


@pytest.mark.parametrize("name", COMPARISONS)
def test_the_docs_table_is_the_committed_rows(name):
    rows = read_rows(RESULTS / COMPARISONS[name][0])
    assert section(name, doc("compression")) == post_training_section(rows)


@pytest.mark.parametrize("name", COMPARISONS)
def test_the_committed_rows_are_whole(name):
    results, seeds = COMPARISONS[name]
    rows = read_rows(RESULTS / results)
    assert all(r["status"] == "finished" for r in rows)
    assert min(entry.seeds for entry in summarize(rows, "test_acc")) >= seeds


def test_a_hugging_face_model_goes_into_a_hypernetwork_and_stays_a_model_of_its_own_class(tmp_path):
    # GPT-2 built from its config: reconstruction, feature-matched distillation on its blocks
    # (they return tuples), then its own generate, save_pretrained and from_pretrained
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(vocab_size=40, n_embd=32, n_layer=2, n_head=2, n_positions=32)
    torch.manual_seed(0)
    trained = transformers.GPT2LMHeadModel(config).eval()
    student = wrap(transformers.GPT2LMHeadModel(config), Hyper(embedding_dim=8, hidden_dim=16))
    errors = compress_into(student, trained, steps=60, lr=0.02, error="per_layer", cosine=True)
    assert errors[-1] < errors[0]

    features = FeatureMatching(student=student, teacher=trained, names=["transformer.h.0", "transformer.h.1"], weight=0.1)
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-3)
    tokens = torch.randint(0, 40, (4, 16))
    for _ in range(3):
        features.teacher_features(tokens)
        student.train()
        loss = F.kl_div(student(tokens).logits.log_softmax(-1), trained(tokens).logits.softmax(-1), reduction="batchmean")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        assert features.loss() is not None and features.loss() > 0
    features.remove()

    student.eval()
    prompt = tokens[:1, :4]
    generated = student.generate(prompt, max_new_tokens=5, do_sample=False, pad_token_id=0)
    assert generated.shape == (1, 9)
    expected = student(tokens).logits
    student.save_pretrained(tmp_path)
    reloaded = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(reloaded(tokens).logits, expected, rtol=1e-5, atol=1e-6)


def test_the_cifar_prose_is_the_committed_rows():
    from doc_text import stated

    rows = read_rows(RESULTS / "cifar10_post_training.jsonl")
    cost = {e.method: e for e in summarize(rows, "test_acc")}
    text = doc("compression")
    assert stated(r"within 1 point of plain \(([\d.]+) ± ([\d.]+)% error\); `into hyper` is ([\d.]+) ± ([\d.]+)%, ([\d.]+) points behind", text) == (
        f"{cost['plain'].cost:.2f}", f"{cost['plain'].cost_std:.2f}", f"{cost['into hyper'].cost:.2f}",
        f"{cost['into hyper'].cost_std:.2f}", f"{cost['into hyper'].cost - cost['plain'].cost:.1f}")
    assert all(e.cost > cost["plain"].cost + 1 for m, e in cost.items() if m != "plain")
    assert stated(r"in 1,750 steps against ([\d.]+) ± ([\d.]+)% in 3,000", text) == (
        f"{cost['hyper distilled'].cost:.2f}", f"{cost['hyper distilled'].cost_std:.2f}")
    assert stated(r"trained alone \(([\d.]+) ± ([\d.]+)%\)", text) == (f"{cost['hyper'].cost:.2f}", f"{cost['hyper'].cost_std:.2f}")
    assert stated(r"The 8 runs' fits add up to (\d+) CPU-minutes", text) == (f"{round(sum(r['fit_time_s'] for r in rows) / 60)}",)


def test_distilling_with_features_runs_the_teacher_once_a_batch(tmp_path):
    # Feature matching needs the teacher's block outputs before the student's step; the soft
    # targets of that same step reuse its logits (Teacher.ahead) instead of running it again.
    torch.manual_seed(0)
    data = TinyImages(size=256, batch_size=64)  # 4 batches an epoch
    route = CompressInto(network=wrap(mlp(), Hyper(embedding_dim=8, hidden_dim=16)), at_epoch=0, distill=True,
                         feature_weight=0.1, feature_modules=["3"])
    calls = []

    class Count(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            if trainer.current_epoch == 1:  # the teacher exists from here
                pl_module.teacher.network.register_forward_pre_hook(lambda *_: calls.append(1))

    trainer = L.Trainer(
        max_epochs=2, callbacks=[route, Count()], default_root_dir=tmp_path, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
    )
    trainer.fit(ImageClassifier(network=mlp(), optimizer=lambda p: torch.optim.Adam(p, lr=0.01)), datamodule=data)
    assert len(calls) == 4
