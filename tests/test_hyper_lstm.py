"""HyperLSTM: the paper's equations and initialisation, the reduction to LN-LSTM, gradient flow."""

import pytest
import torch

from models.hyper_lstm import HyperLSTM, HyperLSTMLayer
from models.lstm import LNLSTM
from reference_lstm import hyper_lstm_step  # the paper's equations, gate by gate, nothing fused

B, T, I, H, HH, NZ = 3, 6, 5, 12, 7, 4
SIZES = dict(input_size=I, hidden_size=H)
HYPER = dict(hyper_size=HH, embedding_dim=NZ)


pytestmark = pytest.mark.usefixtures("one_thread")


def randomize_(module, scale=0.3):
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * scale)
    return module


def new_model(**kwargs):
    torch.manual_seed(0)
    return HyperLSTM(**{**SIZES, **HYPER, **kwargs})


def test_matches_reference_equations_and_their_gradients():
    model = randomize_(new_model())
    layer = model.layers[0]
    x = torch.randn(B, T, I)
    state = tuple(torch.randn(1, B, n, requires_grad=True) for n in (H, H, HH, HH))
    output, final = model(x, state)
    ref, ref_outputs = tuple(s[0] for s in state), []
    for t in range(T):
        ref = hyper_lstm_step(layer, x[:, t], *ref)
        ref_outputs.append(ref[0])
    torch.testing.assert_close(output, torch.stack(ref_outputs, 1))
    for got, want in zip(final, ref):
        torch.testing.assert_close(got[0], want)
    # Gradients too: through time, into the initial state and into every parameter.
    inputs = [*state, *model.parameters()]
    probe = torch.randn_like(output)
    grads = torch.autograd.grad((output * probe).sum() + final[1].sum(), inputs)
    ref_grads = torch.autograd.grad((torch.stack(ref_outputs, 1) * probe).sum() + ref[1].sum(), inputs)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want)


def test_paper_initialisation():
    layer = new_model(hyper_size=64).layers[0]
    assert torch.equal(layer.to_z.weight, torch.zeros_like(layer.to_z.weight))
    assert torch.equal(layer.to_z.bias, torch.ones_like(layer.to_z.bias))
    for w in (layer.weight_hz, layer.weight_xz):
        assert torch.equal(w, torch.full_like(w, 0.1 / NZ))
    assert torch.equal(layer.weight_bz, torch.zeros_like(layer.weight_bz))
    assert layer.bias.abs().sum() == 0
    std = layer.to_z_b.weight.std().item()  # 64 · 16 = 1024 draws of N(0, 0.01²)
    assert 0.008 < std < 0.012, std
    for w in (layer.weight_h, layer.weight_x, layer.hyper.weight_h, layer.hyper.weight_x):
        for block in w.detach().chunk(4):  # orthogonal per gate: orthonormal rows or columns
            gram = block.T @ block if block.shape[0] >= block.shape[1] else block @ block.T
            torch.testing.assert_close(gram, torch.eye(gram.shape[0]), atol=1e-5, rtol=0)


def test_scales_are_point_one_and_bias_zero_at_init():
    layer = new_model().layers[0]
    h_hat = torch.randn(B, HH)  # whatever the hyper LSTM says
    z = torch.cat([layer.to_z(h_hat), layer.to_z_b(h_hat)], -1).view(B, 3, 4, NZ)  # z_h, z_x, z_b
    d = torch.einsum("bkgz,kghz->kbgh", z, torch.stack([layer.weight_hz, layer.weight_xz, layer.weight_bz]))
    d_h, d_x, b = d.flatten(2)
    torch.testing.assert_close(d_h, torch.full((B, 4 * H), 0.1))
    torch.testing.assert_close(d_x, torch.full((B, 4 * H), 0.1))
    torch.testing.assert_close(b + layer.bias, torch.zeros(B, 4 * H))


@pytest.mark.parametrize("num_layers", [1, 2])
def test_hyper_off_is_exactly_ln_lstm(num_layers):
    torch.manual_seed(0)
    ln = randomize_(LNLSTM(**SIZES, num_layers=num_layers))
    off = HyperLSTM(**SIZES, **HYPER, num_layers=num_layers, hyper=False)
    off.load_state_dict(ln.state_dict())  # strict: the same parameters, nothing more
    x = torch.randn(B, T, I)
    out_ln, state_ln = ln(x)
    out_off, state_off = off(x)
    assert torch.equal(out_ln, out_off)
    assert all(torch.equal(a, b) for a, b in zip(state_ln, state_off))


def test_hyper_path_scales_rows_of_w_h_and_w_x():
    """With z fixed to 1, d_h = s_h and d_x = s_x per gate: the HyperLSTM must equal an LN-LSTM
    whose W_h and W_x rows are scaled by those factors. This runs the full hyper path."""
    torch.manual_seed(0)
    ln = randomize_(LNLSTM(**SIZES))
    model = new_model()
    model.load_state_dict(ln.state_dict(), strict=False)
    layer = model.layers[0]
    randomize_(layer.hyper)  # the hyper LSTM runs but, with W_ĥh = W_ĥx = 0, cannot move z
    s_h, s_x = torch.tensor([1.0, 2.0, 0.5, 1.5]), torch.tensor([0.25, 1.0, 3.0, 0.75])
    with torch.no_grad():
        layer.weight_hz.copy_((s_h / NZ)[:, None, None].expand(4, H, NZ))
        layer.weight_xz.copy_((s_x / NZ)[:, None, None].expand(4, H, NZ))
        ln.layers[0].weight_h.mul_(s_h.repeat_interleave(H)[:, None])
        ln.layers[0].weight_x.mul_(s_x.repeat_interleave(H)[:, None])
    x = torch.randn(B, T, I)
    torch.testing.assert_close(model(x)[0], ln(x)[0])


def test_hyper_state_changes_the_output_once_z_depends_on_it():
    model = new_model()
    x = torch.randn(B, T, I)
    before = model(x)[0]
    with torch.no_grad():
        model.layers[0].to_z.weight.normal_(0.0, 0.5)
    assert not torch.allclose(model(x)[0], before, atol=1e-3)


def _loss(model, x):
    output, state = model(x)
    return output.square().mean() + sum(s.square().mean() for s in state[:2])


def _zero_grad_names(model):
    return {n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0}


@pytest.mark.parametrize("layer_norm", [True, False])
def test_gradients_reach_every_part_after_the_first_step(layer_norm):
    model = new_model(num_layers=2, layer_norm=layer_norm)
    x = torch.randn(B, T, I)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    _loss(model, x).backward()
    # At the paper's init W_ĥh = W_ĥx = 0 and W_bz = 0 block the path into the hyper LSTM and W_ĥb.
    blocked = {n for n, _ in model.named_parameters() if ".hyper." in n or "to_z_b" in n}
    assert _zero_grad_names(model) == blocked
    optimiser.step()
    optimiser.zero_grad()
    _loss(model, x).backward()
    assert _zero_grad_names(model) == set()
    groups = ["hyper.weight_x", "hyper.weight_h", "hyper.bias", "to_z.weight", "to_z.bias", "to_z_b"]
    groups += ["weight_hz", "weight_xz", "weight_bz", "0.weight_h", "0.weight_x", "0.bias"]
    groups += ["0.update.gate", "0.update.cell_norm", "hyper.update"] if layer_norm else []
    names = [n for n, _ in model.named_parameters()]
    assert all(any(g in n for n in names) for g in groups)  # every group exists (and got a gradient)


def test_bad_hyper_arguments_raise_value_error():
    with pytest.raises(ValueError, match="embedding_dim"):
        HyperLSTMLayer(**SIZES, embedding_dim=0)
    with pytest.raises(ValueError, match="hyper_size"):
        HyperLSTM(**SIZES, hyper_size=-3)


def test_parameter_counts_match_the_paper():
    """Character PTB (paper Table): 1000 units, one-hot input and softmax over 50 characters,
    hyper LSTM 128, N_z 4: LN-LSTM 4.26M and LN-HyperLSTM 4.92M parameters."""

    def millions(core):
        head = 1000 * 50 + 50
        return round((sum(p.numel() for p in core.parameters()) + head) / 1e6, 2)

    assert millions(LNLSTM(input_size=50, hidden_size=1000)) == 4.26
    assert millions(HyperLSTM(input_size=50, hidden_size=1000, hyper_size=128, embedding_dim=4)) == 4.92
