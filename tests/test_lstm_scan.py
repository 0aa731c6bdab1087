"""The fused recurrent loops (hand-written backward) against autograd through the equations,
with the step's arithmetic in the fused C++ kernels and in eager operations."""

import os
import shutil
import sysconfig
from pathlib import Path

import pytest
import torch
from torch.func import functional_call

from models import fused_kernels, workspace
from models.cpu_linear import onednn_usable
from models.hyper_lstm import HyperLSTMLayer
from models.lstm import LSTMLayer
from reference_lstm import hyper_lstm_layer, lstm_layer

B, T, I, H, HH, NZ = 3, 5, 4, 6, 5, 3
CASES = [("lstm", True), ("lstm", False), ("hyper", True), ("hyper", False)]  # (core, layer_norm)
REQUIRE_SWITCH = "HYPER_REQUIRE_FUSED_KERNELS"  # "1" (CI): the kernels' tests fail instead of skipping

pytestmark = pytest.mark.usefixtures("one_thread")


def require_fused_kernels():
    """The kernels must build wherever a C++ compiler is found (a silent fallback would leave
    the fast path untested); skipped where they are switched off or cannot be compiled, except
    where HYPER_REQUIRE_FUSED_KERNELS=1 (CI): there those reasons fail the test."""
    reason = _why_no_fused_kernels()
    if reason is not None:
        if os.environ.get(REQUIRE_SWITCH) == "1":
            pytest.fail(f"{reason} ({REQUIRE_SWITCH}=1 requires the fused kernels)")
        pytest.skip(reason)
    assert fused_kernels.kernels() is not None, "the fused kernels failed to build (see the warning)"


def _why_no_fused_kernels() -> str | None:
    """Why the kernels cannot run here, or None if they should."""
    if not fused_kernels.enabled:
        return f"{fused_kernels.ENV_SWITCH}=0"
    if shutil.which(os.environ.get("CXX", "c++")) is None:
        return "no C++ compiler: the eager path runs"
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").exists():
        return "no Python headers (Python.h): the eager path runs"
    return None


@pytest.fixture(params=["fused", "eager"])
def kernels(request, monkeypatch):
    """Run a test with the fused kernels, then with them switched off."""
    if request.param == "fused":
        require_fused_kernels()
    else:
        monkeypatch.setattr(fused_kernels, "enabled", False)
    return request.param


def make_layer(core, layer_norm, dtype=torch.float64, sizes=(I, H, HH, NZ)):
    """A layer with every parameter moved off its (often symmetric or zero) initial value."""
    input_size, hidden, hyper_size, n_z = sizes
    torch.manual_seed(0)
    if core == "lstm":
        layer = LSTMLayer(input_size=input_size, hidden_size=hidden, layer_norm=layer_norm)
    else:
        layer = HyperLSTMLayer(
            input_size=input_size, hidden_size=hidden, hyper_size=hyper_size, embedding_dim=n_z, layer_norm=layer_norm
        )
    layer = layer.to(dtype)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return layer


def make_state(layer, carried, batch=B, dtype=torch.float64):
    if carried:
        return tuple(torch.randn(batch, n, dtype=dtype, requires_grad=True) for n in layer.state_sizes)
    return tuple(torch.zeros(batch, n, dtype=dtype) for n in layer.state_sizes)


def reference(layer, x, state):
    if isinstance(layer, HyperLSTMLayer):
        return hyper_lstm_layer(layer, x, state)
    output, h, c = lstm_layer(layer, x, *state)
    return output, (h, c)


def loss_of(output, final, probes):
    """A loss that reaches the output and every entry of the final state."""
    return (output * probes[0]).sum() + sum((s * p).sum() for s, p in zip(final, probes[1:]))


@pytest.mark.parametrize("carried", [True, False], ids=["carried_state", "zero_state"])
@pytest.mark.parametrize("core, layer_norm", CASES)
def test_hand_written_backward_matches_autograd(core, layer_norm, carried, kernels):
    layer = make_layer(core, layer_norm)
    x = torch.randn(B, T, I, dtype=torch.float64, requires_grad=True)
    state = make_state(layer, carried)
    output, final = layer(x, state)
    ref_output, ref_final = reference(layer, x, state)
    torch.testing.assert_close(output, ref_output, rtol=1e-10, atol=1e-12)
    for got, want in zip(final, ref_final):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)

    probes = [torch.randn_like(output), *(torch.randn_like(s) for s in final)]
    inputs = [x, *(s for s in state if s.requires_grad), *layer.parameters()]
    grads = torch.autograd.grad(loss_of(output, final, probes), inputs)
    ref_grads = torch.autograd.grad(loss_of(ref_output, ref_final, probes), inputs)
    names = ["x", *(f"state{k}" for k, s in enumerate(state) if s.requires_grad), *dict(layer.named_parameters())]
    for name, got, want in zip(names, grads, ref_grads):
        assert want.abs().sum() > 0, name  # the reference reaches every input: the comparison bites
        relative = (got - want).norm() / want.norm()
        assert relative < 1e-5, (name, relative.item())


@pytest.mark.parametrize("core, layer_norm", CASES)
def test_gradcheck(core, layer_norm, kernels):
    """Finite differences, independent of any reference implementation."""
    layer = make_layer(core, layer_norm, sizes=(2, 3, 2, 2))
    names, params = zip(*layer.named_parameters())
    x = torch.randn(2, 3, 2, dtype=torch.float64, requires_grad=True)
    state = make_state(layer, True, batch=2)

    def run(x, *tensors):
        state, weights = tensors[: len(layer.state_sizes)], tensors[len(layer.state_sizes) :]
        output, final = functional_call(layer, dict(zip(names, weights)), (x, state))
        return (output, *final)

    assert torch.autograd.gradcheck(run, (x, *state, *params), eps=1e-6, atol=1e-6)


@pytest.mark.filterwarnings("ignore:TF32 acceleration")  # mkldnn.flags touches a GPU-only setting
@pytest.mark.parametrize("core", ["lstm", "hyper"])
def test_onednn_and_plain_matmuls_agree(core):
    layer = make_layer(core, True, dtype=torch.float32, sizes=(8, 16, 8, 4))
    x = torch.randn(4, 7, 8, requires_grad=True)
    state = make_state(layer, True, batch=4, dtype=torch.float32)

    def run():
        output, final = layer(x, state)
        grads = torch.autograd.grad(output.square().sum() + final[1].sum(), [x, *state, *layer.parameters()])
        return [output, *final, *grads]

    if torch.backends.mkldnn.is_available():
        assert onednn_usable(x)  # the default path really is the oneDNN one here
    fused = run()
    with torch.backends.mkldnn.flags(enabled=False):
        assert not onednn_usable(x)
        plain = run()
    for a, b in zip(fused, plain):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("core", ["lstm", "hyper"])
def test_retained_graph_backward_twice_gives_the_same_gradients(core):
    """With retain_graph the saved buffers must not go back to the workspace after the first
    backward: a forward in between would overwrite them."""
    layer = make_layer(core, True, dtype=torch.float32)
    x = torch.randn(B, T, I)
    output, final = layer(x, make_state(layer, False, dtype=torch.float32))
    loss = output.square().sum() + final[1].sum()
    first = torch.autograd.grad(loss, list(layer.parameters()), retain_graph=True)
    layer(torch.randn(B, T, I) * 3, make_state(layer, False, dtype=torch.float32))[0].sum().backward()
    second = torch.autograd.grad(loss, list(layer.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(first, second))


@pytest.mark.parametrize("core", ["lstm", "hyper"])
def test_carried_state_is_not_overwritten_by_later_steps(core):
    """The final state is the next batch's initial state (TBPTT): it must not alias a pooled buffer."""
    layer = make_layer(core, True, dtype=torch.float32)
    output, final = layer(torch.randn(B, T, I), make_state(layer, False, dtype=torch.float32))
    kept = [s.detach().clone() for s in final]
    output.sum().backward()
    for _ in range(2):
        out, _ = layer(torch.randn(B, T, I) * 2, make_state(layer, True, dtype=torch.float32))
        out.sum().backward()
    assert all(torch.equal(s, k) for s, k in zip(final, kept))


def test_workspace_reuses_buffers_between_steps():
    layer = make_layer("lstm", True, dtype=torch.float32)
    workspace.clear()
    layer(torch.randn(B, T, I), make_state(layer, False, dtype=torch.float32))[0].sum().backward()
    pooled = {t.data_ptr() for free in workspace._free.values() for t in free}
    assert len(pooled) >= 3  # the step gave its buffers back
    layer(torch.randn(B, T, I), make_state(layer, False, dtype=torch.float32))[0].sum().backward()
    assert pooled == {t.data_ptr() for free in workspace._free.values() for t in free}  # the same ones again


@pytest.mark.parametrize("core, layer_norm", CASES)
def test_fused_kernels_run_and_agree_with_the_eager_path(core, layer_norm, monkeypatch):
    """float32, sizes that are not a multiple of the vector width, recurrent dropout on, state
    carried: the same outputs and gradients either way, and the fused path really ran."""
    require_fused_kernels()
    layer = make_layer(core, layer_norm, dtype=torch.float32, sizes=(5, 37, 19, 3))
    layer.recurrent_dropout = 0.3
    x = torch.randn(4, 7, 5, requires_grad=True)
    state = make_state(layer, True, batch=4, dtype=torch.float32)

    def run():
        torch.manual_seed(1)  # the same dropout mask
        output, final = layer(x, state)
        grads = torch.autograd.grad(output.square().sum() + final[1].sum(), [x, *state, *layer.parameters()])
        return [output, *final, *grads]

    calls = []
    compiled = fused_kernels.kernels()

    class Counting:
        def __getattr__(self, name):
            calls.append(name)
            return getattr(compiled, name)

    monkeypatch.setattr(fused_kernels, "_module", Counting())
    fused = run()
    expected = {"update_forward", "update_backward"} | ({"hyper_gates", "hyper_gates_backward"} if core == "hyper" else set())
    assert set(calls) == expected
    monkeypatch.setattr(fused_kernels, "enabled", False)
    eager = run()
    for a, b in zip(fused, eager):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
