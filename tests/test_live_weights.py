"""Generated weights live on the target's modules: every call path sees them (the wrapper, the
target's own methods, its submodules, hooks, checkpoint recomputation), saving through the
target writes them, and copies, pickles and ``materialize`` work after training."""

import copy
import io

import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from hyper import Hyper, LowRank, materialize, wrap

SMALL = Hyper(embedding_dim=8, hidden_dim=8)


class Checkpointed(nn.Module):
    """Two linear layers, each run through torch.utils.checkpoint (or not)."""

    def __init__(self, use_reentrant: bool) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(16, 32), nn.Linear(32, 16)
        self.use_reentrant, self.checkpointing = use_reentrant, True

    def forward(self, x):
        if self.use_reentrant:
            x = x.requires_grad_()  # the reentrant variant needs an input that requires grad
        run = (lambda m, h: checkpoint(m, h, use_reentrant=self.use_reentrant)) if self.checkpointing else (lambda m, h: m(h))
        return run(self.fc2, torch.relu(run(self.fc1, x)))


@pytest.mark.parametrize("source", [SMALL, LowRank(rank=2)], ids=["hyper", "lowrank"])
@pytest.mark.parametrize("use_reentrant", [False, True])
def test_checkpointing_recomputes_with_the_generated_weights_and_the_same_gradients(use_reentrant, source):
    torch.manual_seed(0)
    model = wrap(Checkpointed(use_reentrant), source)
    x = torch.randn(4, 16)

    def gradients():
        model.zero_grad()
        model(x).square().sum().backward()
        return [p.grad.clone() for p in model.parameters()]

    checkpointed = gradients()
    model.target.checkpointing = False
    plain = gradients()
    for a, b in zip(plain, checkpointed):
        assert (a - b).abs().max() <= 1e-5 * a.abs().max()


def test_the_targets_own_methods_and_submodules_see_the_weights():
    torch.manual_seed(0)
    model = wrap(nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 16)), SMALL)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    x = torch.randn(4, 16)
    model(x).square().sum().backward()
    optimizer.step()  # the source changed: the bound weights are stale until the next call
    expected = materialize(model)
    with torch.no_grad():
        assert torch.allclose(model.target(x), expected(x), atol=1e-6)  # the target called directly
        assert torch.allclose(model.target[0](x), expected[0](x), atol=1e-6)  # one of its submodules
    seen = []
    model.target[2].register_forward_hook(lambda m, i, o: seen.append(m.weight))
    model(x)
    assert torch.equal(seen[0], model.generated_weights()["2.weight"])  # a hook reads .weight


def test_inference_calls_of_the_target_generate_once_until_the_source_changes():
    torch.manual_seed(0)
    model = wrap(nn.Sequential(nn.Linear(16, 16)), SMALL)
    calls = []
    model.source.register_forward_hook(lambda *a: calls.append(1))
    model(torch.randn(2, 16)).sum().backward()  # a training step's forward
    assert len(calls) == 1
    with torch.no_grad():
        for _ in range(5):
            model.target(torch.randn(2, 16))  # what generate() does, token after token
    assert len(calls) == 1
    with torch.no_grad():
        next(model.source.parameters()).add_(1.0)  # an optimizer step
        model.target(torch.randn(2, 16))
        model.target(torch.randn(2, 16))
    assert len(calls) == 2
    model.zero_grad()
    model.target(torch.randn(2, 16)).sum().backward()  # grad mode: every call is a step
    assert len(calls) == 3 and all(p.grad is not None for p in model.source.parameters())


def test_the_targets_state_dict_holds_the_generated_weights_and_the_wrappers_the_source():
    torch.manual_seed(0)
    target = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 16))
    model = wrap(target, Hyper(embedding_dim=8, hidden_dim=8, tying_groups=None))
    model(torch.randn(2, 16)).sum().backward()
    saved = target.state_dict()
    assert set(saved) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    assert all(not t.requires_grad and t.grad_fn is None for t in saved.values())
    plain = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 16))
    plain.load_state_dict(saved)
    x = torch.randn(3, 16)
    assert torch.allclose(plain(x), model(x), atol=1e-6)  # a contiguous copy: rounding may differ
    # the wrapper's own state: the source and the direct parameters, as before
    own = model.state_dict()
    assert not any(k in own for k in ("target.0.weight", "target.2.weight")) and any(k.startswith("source.") for k in own)
    again = wrap(nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 16)), Hyper(embedding_dim=8, hidden_dim=8))
    again.load_state_dict(own)
    assert torch.equal(again(x), model(x))


def test_materialize_copy_and_pickle_after_a_training_step_of_an_lstm():
    torch.manual_seed(0)
    model = wrap(nn.LSTM(16, 16), SMALL, include="weight_*")
    x = torch.randn(5, 2, 16)
    model(x)[0].sum().backward()  # the LSTM's cached flat weights now hold generated tensors
    plain = materialize(model)
    assert type(plain) is nn.LSTM and all(isinstance(p, nn.Parameter) for p in plain._flat_weights)
    assert torch.allclose(plain(x)[0], model(x)[0], atol=1e-6)
    duplicate = copy.deepcopy(model)
    assert torch.allclose(duplicate(x)[0], model(x)[0], atol=1e-6)
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert torch.allclose(loaded(x)[0], model(x)[0], atol=1e-6)


def test_weights_passed_for_one_call_do_not_stay_for_the_next():
    torch.manual_seed(0)
    model = wrap(nn.Sequential(nn.Linear(16, 16)), SMALL)
    x = torch.randn(2, 16)
    zeros = {name: torch.zeros_like(w) for name, w in model.generated_weights().items()}
    assert torch.equal(model(x, weights=zeros), model.target[0].bias.expand(2, 16))
    with torch.no_grad():
        assert torch.allclose(model.target(x), materialize(model)(x), atol=1e-6)  # from the source again
