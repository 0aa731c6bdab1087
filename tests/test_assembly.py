"""The hypernetwork's hot path (one matmul into reused buffers, a hand-written backward) gives the
same weights and gradients as plain autograd, and never changes weights someone still holds."""

import pytest
import torch

from hyper import GeneratedLayer, Hyper
from hyper.assembly import assemble

pytestmark = pytest.mark.usefixtures("one_thread")

# A 3×3 kernel of 2 × 3 tiles, a cropped one (padding), a one-tile one used by two layers (tied).
LAYERS = [
    GeneratedLayer("a", (32, 48, 3, 3), "s0", 0, "conv"),
    GeneratedLayer("b", (20, 40, 3, 3), "s1", 0, "conv"),
    GeneratedLayer("c0", (16, 16, 3, 3), "s2", 0, "conv"),
    GeneratedLayer("c1", (16, 16, 3, 3), "s2", 1, "conv"),
]


def source():
    torch.manual_seed(0)
    return Hyper(embedding_dim=4, hidden_dim=8, tying_groups=1).build(LAYERS).double()


def autograd_weights(src):
    key = "3x3"
    table = src.tables[key]
    kernels = assemble(table.generator(table.embeddings), table.placements)
    return {layer.name: kernel for group, kernel in zip(src.groups[key], kernels) for layer in group}


def test_the_hot_path_is_used_and_matches_autograd_in_values_and_gradients():
    fast_src, slow_src = source(), source()
    assert fast_src.tables["3x3"].generator.folding_pays(fast_src.tables["3x3"].embeddings.shape[0])
    fast, slow = fast_src(), autograd_weights(slow_src)
    assert fast["c0"] is fast["c1"] and fast["b"].shape == (20, 40, 3, 3)
    grads = {name: torch.randn_like(w) for name, w in slow.items()}
    for weights, src in ((fast, fast_src), (slow, slow_src)):
        sum((weights[n] * g).sum() for n, g in grads.items()).backward()
    for (name, p), (_, q) in zip(fast_src.named_parameters(), slow_src.named_parameters()):
        assert torch.allclose(p.grad, q.grad, rtol=1e-10, atol=1e-12), name
    for name in slow:
        assert torch.allclose(fast[name], slow[name], rtol=1e-12, atol=1e-12)


def test_weights_someone_holds_are_never_overwritten():
    src = source().float()
    with torch.no_grad():
        held = src()
        kept = {n: w.clone() for n, w in held.items()}
        src.tables["3x3"].embeddings.add_(1.0)
        again = src()
    assert all(torch.equal(held[n], kept[n]) for n in held)  # the first call's weights are intact
    assert not torch.equal(again["a"], held["a"])


def test_one_weight_someone_holds_is_never_overwritten():
    src = source().float()
    with torch.no_grad():
        held = src()["a"]  # the other weights dropped: one view is the least that can hold the buffer
        kept = held.clone()
        src.tables["3x3"].embeddings.add_(1.0)
        src()
    assert torch.equal(held, kept)


def test_buffers_are_reused_once_nothing_holds_them():
    src = source().float()
    with torch.no_grad():
        first = src()["a"].data_ptr()
        second = src()["a"].data_ptr()  # the first call's weights were dropped: same memory
    assert first == second


def test_two_forwards_before_one_backward_sum_their_gradients():
    src = source()
    x = src()["a"].sum() + src()["a"].sum()  # the second call may not reuse what the graph holds
    x.backward()
    twice = src.tables["3x3"].embeddings.grad.clone()
    src.zero_grad()
    src()["a"].sum().backward()
    assert torch.allclose(twice, 2 * src.tables["3x3"].embeddings.grad)


def test_weights_the_loss_leaves_out_get_zero_gradient_in_a_reused_buffer():
    fast_src, slow_src = source(), source()
    weights = fast_src()
    sum(w.sum() for w in weights.values()).backward()  # every tile's slot of the gradient buffer is written
    grad_buffer = fast_src.tables["3x3"].reused.grad
    first = grad_buffer.tensor.data_ptr()
    fast_src.zero_grad()
    fast_src()["a"].sum().backward()  # b, c0 and c1 unused: their slots still hold the last step's
    assert grad_buffer.tensor.data_ptr() == first  # the same buffer, reused
    autograd_weights(slow_src)["a"].sum().backward()
    for (name, p), (_, q) in zip(fast_src.named_parameters(), slow_src.named_parameters()):
        assert torch.allclose(p.grad, q.grad, rtol=1e-10, atol=1e-12), name


def test_under_autocast_the_hot_path_runs_and_matches_autograd(monkeypatch):
    """bf16 autocast (CPU's): the same bf16 weights as autograd's path, fp32 gradients within
    bf16's rounding, and the hot path really ran."""
    from hyper import assembly

    calls = []
    run = assembly._GenerateAndAssemble.apply
    monkeypatch.setattr(assembly._GenerateAndAssemble, "apply", lambda *a: calls.append(a[0].dtype) or run(*a))
    fast_src, slow_src = source().float(), source().float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fast, slow = fast_src(), autograd_weights(slow_src)
        assert calls == [torch.bfloat16]
        assert all(w.dtype == torch.bfloat16 for w in (*fast.values(), *slow.values()))
        grads = {name: torch.randn_like(w) for name, w in slow.items()}
        for weights, src in ((fast, fast_src), (slow, slow_src)):
            sum((weights[n].float() * g).sum() for n, g in grads.items()).backward()
    for name in slow:
        torch.testing.assert_close(fast[name], slow[name], rtol=0, atol=0)  # the same bf16 numbers
    for (name, p), (_, q) in zip(fast_src.named_parameters(), slow_src.named_parameters()):
        assert p.grad.dtype == torch.float32
        torch.testing.assert_close(p.grad, q.grad, rtol=2e-2, atol=1e-3, msg=name)
