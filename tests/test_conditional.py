"""Conditional hypernetworks: weights per condition, per sample and per task."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from hyper import Hyper, LowRank, count_parameters, materialize, wrap
from hyper.rnn_steps import stepwise_rnns


class ConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(16, 32, 3, padding=1)
        self.fc = nn.Linear(32, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).relu().mean((2, 3)))


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class Recurrent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(16, 16, batch_first=True)
        self.head = nn.Linear(16, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.lstm(x)[0])


class Ragged(nn.Module):
    """Linear layers the tile does not divide (generated padded and cropped), on token sequences."""

    def __init__(self) -> None:
        super().__init__()
        self.up, self.down = nn.Linear(20, 37), nn.Linear(37, 5, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.up(x).tanh())


TARGETS = {
    "conv": (ConvNet, (16, 8, 8), 16),
    "linear": (MLP, (16,), 16),
    "lstm": (Recurrent, (5, 16), 4),
    "padded linear on tokens": (Ragged, (7, 20), 8),
}


def conditional(make: type[nn.Module], tile: int, **knobs: object) -> nn.Module:
    torch.manual_seed(0)
    with warnings.catch_warnings():  # some tiny targets do not compress: not what is tested here
        warnings.simplefilter("ignore")
        model = wrap(make(), Hyper(embedding_dim=8, hidden_dim=8, tile_channels=tile, **knobs), pad=True)
    with torch.no_grad():  # the condition map starts at zero (conditional = unconditional): move it
        for name, p in model.named_parameters():
            if "film" in name:
                p.normal_(std=0.3)
    return model


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize("kind", TARGETS)
def test_per_sample_weights_equal_each_sample_run_alone(kind: str) -> None:
    make, shape, tile = TARGETS[kind]
    model = conditional(make, tile, condition_dim=5)
    x, e = torch.randn(6, *shape), torch.randn(6, 5)
    together = model(x, condition=e)
    alone = torch.cat([model(x[i : i + 1], condition=e[i]) for i in range(6)])
    assert relative(together, alone) <= 1e-5
    assert relative(alone[0], alone[1]) > 1e-3  # the conditions really give different weights
    assert relative(model(x, condition=e, chunk=4), together) <= 1e-6


@pytest.mark.parametrize("kind", ["linear", "padded linear on tokens", "conv"])
def test_per_sample_gradients_equal_the_sum_over_samples_run_alone(kind: str) -> None:
    make, shape, tile = TARGETS[kind]
    model = conditional(make, tile, condition_dim=5)
    x, e = torch.randn(4, *shape), torch.randn(4, 5)
    model(x, condition=e).square().sum().backward()
    together = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    for i in range(4):
        model(x[i : i + 1], condition=e[i]).square().sum().backward()
    for name, p in model.named_parameters():
        assert relative(together[name], p.grad) <= 1e-5, name


def test_a_shared_condition_is_one_weight_set_and_different_conditions_differ() -> None:
    model = conditional(ConvNet, 16, condition_dim=5)
    x, e = torch.randn(3, 16, 8, 8), torch.randn(5)
    shared = model(x, condition=e)
    assert relative(shared, model(x, condition=e.expand(3, 5))) <= 1e-5
    assert relative(model(x, condition=-e), shared) > 1e-3


def test_the_condition_map_starts_at_zero_so_every_condition_starts_with_the_same_weights() -> None:
    torch.manual_seed(0)
    with pytest.warns(UserWarning):
        model = wrap(MLP(), Hyper(embedding_dim=8, hidden_dim=8, condition_dim=3))
    a, b = model.generated_weights(condition=torch.randn(3)), model.generated_weights(condition=torch.randn(3))
    assert all(torch.equal(a[n], b[n]) for n in a)


def test_task_ids_select_their_task_embedding() -> None:
    model = conditional(ConvNet, 16, num_tasks=3)
    x = torch.randn(6, 16, 8, 8)
    tasks = torch.tensor([0, 1, 2, 2, 1, 0])
    per_sample = model(x, task=tasks)
    for t in range(3):
        rows = tasks == t
        by_id = model(x[rows], task=t)
        assert relative(by_id, model(x[rows], condition=model.source.task_embeddings[t])) <= 1e-6
        assert relative(per_sample[rows], by_id) <= 1e-5
    assert relative(model(x, task=0), model(x, task=1)) > 1e-3


def test_task_embeddings_count_against_one_plain_network_per_task() -> None:
    model = conditional(ConvNet, 16, num_tasks=4)
    count, plain = count_parameters(model), count_parameters(ConvNet())
    assert count.plain_equivalent == 4 * plain.trainable
    assert count.breakdown["task embeddings"] == 4 * 8  # condition_dim defaults to embedding_dim
    assert sum(count.breakdown.values()) == count.trainable


def test_materialize_with_a_condition_equals_the_conditional_forward() -> None:
    model = conditional(ConvNet, 16, num_tasks=3)
    x = torch.randn(2, 16, 8, 8)
    plain = materialize(model, task=2)
    assert type(plain) is ConvNet
    assert relative(plain(x), model(x, task=2)) <= 1e-6
    e = torch.randn(8)
    assert relative(materialize(model, condition=e)(x), model(x, condition=e)) <= 1e-6
    with pytest.raises(ValueError, match="condition"):
        materialize(model)
    with pytest.raises(ValueError, match="one weight set"):
        materialize(model, condition=torch.randn(2, 8))


def test_conditioned_binds_one_task_for_every_call_path() -> None:
    model = conditional(Recurrent, 4, num_tasks=2)
    x = torch.randn(2, 5, 16)
    with model.conditioned(task=1):
        assert relative(model.target(x), model(x, task=1)) <= 1e-6
        with torch.no_grad():  # an inference loop calling an inner module reuses the task's weights
            model.target.lstm(x)
    with pytest.raises(ValueError, match="conditioned"):
        model.target(x)


def test_conditioned_training_steps_reach_the_task_embedding() -> None:
    model = conditional(MLP, 16, num_tasks=2)
    x = torch.randn(4, 16)
    with model.conditioned(task=1):
        for _ in range(2):  # a new graph each step: the task's row is looked up per generation
            model.zero_grad()
            model.target(x).sum().backward()
            grad = model.source.task_embeddings.grad
            assert grad[1].abs().sum() > 0 and grad[0].abs().sum() == 0


def test_dropout_draws_independently_per_sample() -> None:
    torch.manual_seed(0)
    with pytest.warns(UserWarning):
        model = wrap(nn.Sequential(nn.Linear(16, 16), nn.Dropout(0.5)), Hyper(embedding_dim=4, hidden_dim=4, condition_dim=2))
    out = model(torch.ones(2, 16), condition=torch.zeros(2, 2))
    assert not torch.equal(out[0] == 0, out[1] == 0)


@pytest.mark.parametrize(
    "make",
    [
        lambda: nn.LSTM(6, 5, num_layers=2, batch_first=True, bidirectional=True),
        lambda: nn.GRU(6, 5, num_layers=2),
        lambda: nn.RNN(6, 5, nonlinearity="relu", bias=False, batch_first=True),
        lambda: nn.LSTM(6, 5),
    ],
)
def test_written_out_rnns_equal_the_fused_op(make) -> None:
    torch.manual_seed(0)
    rnn = make()
    x = torch.randn(3, 4, 6)
    expected = rnn(x)
    with stepwise_rnns(rnn):
        got = rnn(x)
        unbatched = rnn(x[:, 0] if not rnn.batch_first else x[0])
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    reference = rnn(x[:, 0] if not rnn.batch_first else x[0])
    torch.testing.assert_close(unbatched, reference, rtol=1e-5, atol=1e-6)
    assert "forward" not in rnn.__dict__  # the module is its own again


@pytest.mark.parametrize("per_sample", [False, True])
def test_compiled_conditional_model_equals_eager(per_sample: bool) -> None:
    model = conditional(ConvNet, 16, condition_dim=5)
    compiled = torch.compile(model, backend="aot_eager")
    x = torch.randn(3, 16, 6, 6)
    e = torch.randn(3, 5) if per_sample else torch.randn(5)
    torch.testing.assert_close(compiled(x, condition=e), model(x, condition=e), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda m, x: m(x), "condition: this model's weights depend on a condition; pass task="),
        (lambda m, x: m(x, task=3), "task must be in [0, 3), got 3"),
        (lambda m, x: m(x, task=-1), "task must be in [0, 3), got -1"),
        (lambda m, x: m(x, task=torch.tensor([0, 5])), "task must be in [0, 3), got 5"),
        (lambda m, x: m(x, task=1.0), "task must be an int"),
        (lambda m, x: m(x, task=torch.tensor([0.0, 1.0])), "task must be an int or a (B,) tensor of ints"),
        (lambda m, x: m(x, condition=torch.randn(3)), "condition must have shape (8,) or (B, 8), got (3,)"),
        (lambda m, x: m(x, condition=torch.randn(2, 2, 8)), "condition must have shape"),
        (lambda m, x: m(x, condition=[0.0] * 8), "condition must be a tensor"),
        (lambda m, x: m(x, condition=torch.randn(8), task=0), "pass one of them, not both"),
        (lambda m, x: m(x, condition=torch.randn(3, 8)), "first axis is the batch of 3"),
        (lambda m, x: m(x, condition=torch.randn(2, 8), chunk=0), "chunk must be a positive integer"),
        (lambda m, x: m.conditioned(condition=torch.randn(2, 8)).__enter__(), "conditioned() takes one condition"),
    ],
)
def test_bad_conditions_are_one_clear_error(call, words: str) -> None:
    model = conditional(MLP, 16, num_tasks=3)
    with pytest.raises(ValueError) as error:
        call(model, torch.randn(2, 16))
    assert words in str(error.value)


def test_an_unconditional_source_refuses_a_condition() -> None:
    model = wrap(MLP(), LowRank(rank=2))
    with pytest.raises(ValueError, match="task: this model's weight source is not conditional"):
        model(torch.randn(2, 16), task=0)


def test_per_sample_weights_refuse_batch_norm_in_training() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(16, 16, 3), nn.BatchNorm2d(16))
    model = wrap(net, Hyper(embedding_dim=4, hidden_dim=4, condition_dim=2))
    x, e = torch.randn(2, 16, 5, 5), torch.randn(2, 2)
    with pytest.raises(ValueError, match="batch norm in training mode"):
        model(x, condition=e)
    model.eval()
    assert model(x, condition=e).shape == (2, 16, 3, 3)


@pytest.mark.parametrize("knob, value", [("condition_dim", 0), ("num_tasks", -1), ("num_tasks", 1.5)])
def test_bad_condition_knobs(knob: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"{knob} must be a positive integer"):
        Hyper(**{knob: value})


def test_per_sample_linear_layers_never_make_their_weight_sets() -> None:
    model = conditional(MLP, 16, condition_dim=5)
    linears = frozenset(model.source.provides)
    weights, films = model.source.per_sample(torch.randn(64, 5), linears)
    assert weights == {}  # 64 weight sets of every matrix would be made by the materialized path
    assert {k: tuple(v.shape) for k, v in films.items()} == {"matrix": (64, 2, 8)}


def _ddp_gradients(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    model = nn.parallel.DistributedDataParallel(conditional(ConvNet, 16, num_tasks=3))
    torch.manual_seed(1)
    x, tasks = torch.randn(8, 16, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2, 2, 1])
    part = slice(rank * 8 // world, (rank + 1) * 8 // world)
    model(x[part], task=tasks[part]).square().mean().backward()
    torch.save({n: p.grad for n, p in model.module.named_parameters()}, f"{out}/{world}-{rank}.pt")
    dist.destroy_process_group()


def test_ddp_on_two_processes_equals_one_process_on_the_same_data(tmp_path) -> None:  # noqa: ANN001
    import socket

    import torch.multiprocessing as mp

    context = mp.get_context("spawn")
    for world in (1, 2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        processes = [context.Process(target=_ddp_gradients, args=(r, world, port, str(tmp_path))) for r in range(world)]
        for p in processes:
            p.start()
        for p in processes:
            p.join(timeout=120)
            assert p.exitcode == 0
    one = torch.load(tmp_path / "1-0.pt")
    for rank in range(2):
        two = torch.load(tmp_path / f"2-{rank}.pt")
        for name, grad in one.items():  # DDP averages the two halves' gradients: the whole batch's
            assert relative(two[name], grad) <= 1e-5, name
