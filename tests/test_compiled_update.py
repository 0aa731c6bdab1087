"""The compiled recurrent steps (the loops' GPU path, ``models.compiled_steps``) against the
eager operations, on CPU.

``HYPER_COMPILED_STEPS=1`` (``compiled_update.mode``) sends CPU tensors through
``torch.compile`` (Inductor's C++ backend here, Triton on CUDA): the same Python, the same
fusion and buffer writes, so its arithmetic is tested without a GPU. Compiling costs ~10–20 s a
case on this machine, so the cases are chosen to cover every branch once: the HyperLSTM with
layer norm and recurrent dropout (main cell with a mask, hyper cell without one and with a
strided ∂L/∂y buffer), and the plain LSTM path without layer norm; evaluation too (no saved
buffers).
"""

import warnings
from types import SimpleNamespace

import pytest
import torch

from models import compiled_steps, compiled_update, fused_kernels
from test_lstm_scan import CASES, make_layer, make_state

pytestmark = pytest.mark.usefixtures("one_thread")


def run(layer, x, state):
    torch.manual_seed(1)  # the same dropout mask
    output, final = layer(x, state)
    grads = torch.autograd.grad(output.square().sum() + final[1].sum(), [x, *state, *layer.parameters()])
    with torch.no_grad():
        evaluated, _ = layer.eval()(x, state)
    layer.train()
    return [output, *final, *grads, evaluated]


@pytest.mark.parametrize("core, layer_norm", CASES)
def test_the_steps_agree_with_the_eager_path(core, layer_norm, monkeypatch):
    """The steps' arithmetic and their blocks (7 steps in blocks of 3, 3 and 1), run uncompiled."""
    monkeypatch.setattr(compiled_steps, "STEPS_PER_CALL", 3)
    monkeypatch.setattr(compiled_update, "compiled", lambda fn, variant: fn)
    layer, x, state = _problem(core, layer_norm, steps=7)
    eager, steps = _compare(layer, x, state, monkeypatch)
    assert set(steps) == {_STEPS[core], f"{_STEPS[core]}_backward"}


def test_the_compiled_steps_agree_with_the_eager_path(monkeypatch):
    """Compiled (Inductor's C++ backend here): a HyperLSTM with layer norm and recurrent dropout,
    2 steps in blocks of 1 (compiling costs ~10 s a block step here), training and evaluation."""
    monkeypatch.setattr(compiled_steps, "STEPS_PER_CALL", 1)
    layer, x, state = _problem("hyper", True, steps=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a fallback to eager would pass unseen
        _, steps = _compare(layer, x, state, monkeypatch)
    assert set(steps) == {"_hyper_lstm_steps", "_hyper_lstm_steps_backward"}
    assert not compiled_update._broken


_STEPS = {"hyper": "_hyper_lstm_steps", "lstm": "_lstm_steps"}


def _problem(core, layer_norm, steps):
    """float32, sizes that are not a multiple of the vector width, recurrent dropout on, state carried."""
    layer = make_layer(core, layer_norm, dtype=torch.float32, sizes=(5, 37, 19, 3))
    layer.recurrent_dropout = 0.3
    return layer, torch.randn(4, steps, 5, requires_grad=True), make_state(layer, True, batch=4, dtype=torch.float32)


def _compare(layer, x, state, monkeypatch):
    """The layer's outputs and gradients with the steps of ``models.compiled_steps`` against the
    CPU loop's eager operations (the fused kernels off): equal; returns the step functions run."""
    monkeypatch.setattr(fused_kernels, "enabled", False)
    monkeypatch.setattr(compiled_update, "mode", "0")
    eager = run(layer, x, state)
    calls = []
    compile_ = compiled_update.compiled
    monkeypatch.setattr(compiled_update, "compiled", lambda fn, variant: calls.append(fn.__name__) or compile_(fn, variant))
    monkeypatch.setattr(compiled_update, "mode", "1")
    stepped = run(layer, x, state)
    for a, b in zip(stepped, eager, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    return eager, calls


def test_a_failed_compile_warns_once_and_runs_the_steps_uncompiled(monkeypatch):
    monkeypatch.setattr(fused_kernels, "enabled", False)
    layer = make_layer("lstm", True, dtype=torch.float32)
    x, state = torch.randn(3, 5, 4), make_state(layer, False, dtype=torch.float32)
    monkeypatch.setattr(compiled_update, "mode", "0")
    expected = layer(x, state)[0]

    def fail(*args):
        raise RuntimeError("no backend\nsecond line")

    monkeypatch.setattr(compiled_update, "mode", "1")
    monkeypatch.setattr(compiled_update, "compiled", lambda fn, variant: fail)
    monkeypatch.setattr(compiled_update, "_broken", False)
    with pytest.warns(RuntimeWarning, match=r"torch.compile of the recurrent steps failed \(RuntimeError: no backend\)") as caught:
        output = layer(x, state)[0]
    assert len(caught) == 1
    assert not compiled_update.usable(x)  # eager from then on
    torch.testing.assert_close(output, expected)


def test_by_default_only_cuda_tensors_take_the_compiled_steps(monkeypatch):
    def cuda_like(floating=True):  # a stand-in: no CUDA tensor can be made here
        return SimpleNamespace(device=torch.device("cuda"), dtype=torch.float32, is_floating_point=lambda: floating)

    cpu = torch.zeros(1)
    monkeypatch.setattr(compiled_update, "_broken", False)
    monkeypatch.setattr(compiled_update, "mode", None)
    assert compiled_update.usable(cuda_like())
    assert not compiled_update.usable(cpu)
    assert not compiled_update.usable(cuda_like(floating=False))
    monkeypatch.setattr(compiled_update, "mode", "0")
    assert not compiled_update.usable(cuda_like())
    monkeypatch.setattr(compiled_update, "mode", "1")
    monkeypatch.setattr(fused_kernels, "usable", lambda like: True)
    assert not compiled_update.usable(cpu)  # where the fused CPU kernels run, they do
    monkeypatch.setattr(fused_kernels, "usable", lambda like: False)
    assert compiled_update.usable(cpu)


def test_the_first_compile_is_announced_once(monkeypatch, caplog):
    monkeypatch.setattr(compiled_update, "_variants", {})
    monkeypatch.setattr(compiled_update.torch, "compile", lambda fn, **options: fn)  # nothing compiled here
    with caplog.at_level("WARNING", logger="models.compiled_update"):
        compiled_update.compiled(compiled_steps._lstm_steps, ("a",))
        compiled_update.compiled(compiled_steps._lstm_steps, ("b",))
    assert [r.getMessage() for r in caplog.records] == [
        "Compiling the recurrent steps with torch.compile (first use: tens of seconds; HYPER_COMPILED_STEPS=0 skips it)"]


def test_a_switch_value_other_than_0_or_1_warns_in_one_line():
    assert [compiled_update._read_mode(v) for v in (None, "", "0", "1")] == [None, None, "0", "1"]
    with pytest.warns(RuntimeWarning, match=r"^HYPER_COMPILED_STEPS must be 0 or 1, got 'false': ignored") as caught:
        assert compiled_update._read_mode("false") is None
    assert len(caught) == 1 and "\n" not in str(caught[0].message)
