"""Models written by others: Hugging Face GPT-2, Llama, T5, BERT and ViT, built from small configs
(no download), wrapped by default and used as their library uses them: a training step,
``generate``, ``save_pretrained``/``from_pretrained``, gradient checkpointing, ``torch.compile``."""

import math
import warnings

import pytest
import torch
import transformers as tf
from torch import nn

from hyper import Hyper, Tied, count_parameters, materialize, wrap

TILE = 16
V = 50  # a vocabulary the tile does not divide: embeddings and heads stay direct


def gpt2():
    return tf.GPT2LMHeadModel(tf.GPT2Config(vocab_size=V, n_embd=32, n_layer=2, n_head=2, n_positions=32))


def llama():
    return tf.LlamaForCausalLM(tf.LlamaConfig(
        vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=32, tie_word_embeddings=False,
    ))


def t5():
    return tf.T5ForConditionalGeneration(tf.T5Config(
        vocab_size=V, d_model=32, d_kv=16, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=2,
        decoder_start_token_id=0, pad_token_id=0,
    ))


def bert():
    return tf.BertForSequenceClassification(tf.BertConfig(
        vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=32, num_labels=3,
    ))


def vit():
    return tf.ViTForImageClassification(tf.ViTConfig(
        image_size=16, patch_size=4, num_channels=3, hidden_size=32, intermediate_size=64,
        num_hidden_layers=2, num_attention_heads=2, num_labels=3,
    ))


ZOO = {"gpt2": gpt2, "llama": llama, "t5": t5, "bert": bert, "vit": vit}
GENERATIVE = ["gpt2", "llama", "t5"]


def inputs(name: str) -> dict:
    g = torch.Generator().manual_seed(1)
    if name == "vit":
        return {"pixel_values": torch.randn(2, 3, 16, 16, generator=g), "labels": torch.tensor([0, 2])}
    ids = torch.randint(1, V, (2, 8), generator=g)
    if name == "bert":
        return {"input_ids": ids, "labels": torch.tensor([0, 2])}
    if name == "t5":
        return {"input_ids": ids, "labels": torch.randint(1, V, (2, 5), generator=g)}
    return {"input_ids": ids, "labels": ids}


def wrapped(name: str):
    torch.manual_seed(0)
    model = ZOO[name]()
    model.config.use_cache = False  # no cache during training-style calls; generate turns it on
    return wrap(model, Hyper(embedding_dim=8, hidden_dim=8)), model


def expected_generated(model: nn.Module) -> set[str]:
    """Every linear-like weight (nn.Linear, Conv1D, conv) whose two channel axes the tile
    divides and that is not shared under a second name: the documented default."""
    counts = {}
    for _, p in model.named_parameters(remove_duplicate=False):
        counts[id(p)] = counts.get(id(p), 0) + 1
    names = set()
    for prefix, module in model.named_modules():
        weight = module._parameters.get("weight")
        linear_like = isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)) or type(module).__name__ == "Conv1D"
        if linear_like and weight is not None and counts[id(weight)] == 1:
            if weight.shape[0] % TILE == 0 and weight.shape[1] % TILE == 0:
                names.add(f"{prefix}.weight")
    return names


def train_step(w: nn.Module, name: str, optimizer: torch.optim.Optimizer) -> float:
    loss = w(**inputs(name)).loss
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


@pytest.fixture(autouse=True)
def quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tf.logging.set_verbosity_error()
        yield


@pytest.mark.parametrize("name", ZOO)
def test_default_wrap_generates_the_linear_layers_and_trains(name):
    torch.manual_seed(0)
    model = ZOO[name]()
    expected = expected_generated(model)
    w = wrap(model, Hyper(embedding_dim=8, hidden_dim=8))
    assert set(w.source.provides) == expected and len(expected) >= 8
    count = count_parameters(w)
    generated = sum(math.prod(layer.shape) for layer in w.layers)
    assert count.plain_equivalent == count.trainable - sum(p.numel() for p in w.source.parameters()) + generated
    optimizer = torch.optim.Adam(w.parameters(), lr=3e-3)
    losses = [train_step(w, name, optimizer) for _ in range(6)]
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in w.source.parameters())


@pytest.mark.parametrize("name", GENERATIVE)
def test_generate_equals_the_materialized_model_token_for_token(name):
    w, model = wrapped(name)
    optimizer = torch.optim.Adam(w.parameters(), lr=1e-2)
    train_step(w, name, optimizer)  # the weights now differ from their initial generation
    ids = inputs(name)["input_ids"]
    mask = torch.ones_like(ids)
    w.eval()
    out = w.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=False, pad_token_id=0)
    plain = materialize(w).eval()
    assert type(plain) is type(model)
    reference = plain.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=False, pad_token_id=0)
    new_tokens = out.shape[1] - (1 if name == "t5" else ids.shape[1])  # T5 returns the decoder side
    assert new_tokens == 6 and torch.equal(out, reference)


@pytest.mark.parametrize("name", ZOO)
def test_save_pretrained_loads_into_the_plain_class_with_the_same_outputs(name, tmp_path):
    w, model = wrapped(name)
    train_step(w, name, torch.optim.Adam(w.parameters(), lr=1e-2))
    w.eval()
    batch = {k: v for k, v in inputs(name).items() if k != "labels"}
    if name == "t5":
        batch["decoder_input_ids"] = torch.zeros(2, 1, dtype=torch.long)
    expected = w(**batch).logits
    w.save_pretrained(tmp_path)
    reloaded = type(model).from_pretrained(tmp_path).eval()
    assert torch.allclose(reloaded(**batch).logits, expected, rtol=1e-5, atol=1e-6)
    # and the hypernetwork's own state, to go on training the same hypernetwork
    again = wrap(type(model).from_pretrained(tmp_path), Hyper(embedding_dim=8, hidden_dim=8))
    again.load_state_dict(torch.load(tmp_path / "hypernetwork.pt"))
    assert torch.allclose(again.eval()(**batch).logits, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("reentrant", [True, False])
@pytest.mark.parametrize("name", ["gpt2", "llama", "bert"])
def test_gradient_checkpointing_gives_the_same_gradients(name, reentrant):
    w, model = wrapped(name)
    w.train()

    def gradients():
        w.zero_grad()
        torch.manual_seed(0)  # the same dropout masks (a checkpoint replays the RNG state it saw)
        w(**inputs(name)).loss.backward()
        return [p.grad.clone() for p in w.parameters()]

    plain = gradients()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": reentrant})
    checkpointed = gradients()
    for a, b in zip(plain, checkpointed):
        assert (a - b).abs().max() <= 1e-5 * a.abs().max()  # float rounding of a recomputation only


@pytest.mark.parametrize("name", ["gpt2", "vit"])
def test_torch_compile_equals_eager_before_and_after_optimizer_steps(name):
    w, _ = wrapped(name)
    w.eval()  # no dropout: the two must compute the same function
    compiled = torch.compile(w, backend="aot_eager")  # dynamo's graph capture and AOT autograd
    optimizer = torch.optim.SGD(w.parameters(), lr=0.1)
    for _ in range(3):
        batch = inputs(name)
        eager, traced = w(**batch), compiled(**batch)
        assert torch.allclose(traced.logits, eager.logits, rtol=1e-4, atol=1e-5)
        optimizer.zero_grad()
        traced.loss.backward()  # the step goes through the compiled graph
        optimizer.step()
    assert not torch.allclose(w(**inputs(name)).logits, eager.logits)  # the steps changed the weights


def test_gpt2_conv1d_weights_start_with_the_kaiming_std_of_their_true_fan_in():
    """Conv1D stores its weight (in, out): c_fc is (64, 256), fan-in 64; c_proj (256, 64), fan-in 256."""
    torch.manual_seed(0)
    model = tf.GPT2LMHeadModel(tf.GPT2Config(vocab_size=V, n_embd=64, n_layer=1, n_head=2, n_positions=16))
    w = wrap(model, Tied(tying_groups=None))  # untied: i.i.d. draws at each layer's init_std
    layers = {layer.name: layer for layer in w.layers}
    weights = w.generated_weights()
    for name, fan_in in [("transformer.h.0.mlp.c_fc.weight", 64), ("transformer.h.0.mlp.c_proj.weight", 256)]:
        assert layers[name].init_std == pytest.approx(1 / math.sqrt(fan_in))
        # 16,384 draws: the sample std is within 1.1% (one standard error) of the true one
        assert weights[name].std().item() == pytest.approx(1 / math.sqrt(fan_in), rel=0.05)


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_bf16_autocast_trains_through_the_generators_fast_path_then_generates_and_saves(name, tmp_path, monkeypatch):
    """CPU bf16 autocast on a wrapped Hugging Face model: the generator's fast path runs in bf16,
    the loss and fp32 gradients stay near fp32's, and the model still generates and saves."""
    from hyper import assembly

    dtypes = []
    run = assembly._GenerateAndAssemble.apply
    monkeypatch.setattr(assembly._GenerateAndAssemble, "apply", lambda *a: dtypes.append(a[0].dtype) or run(*a))
    w, model = wrapped(name)

    def loss_and_gradient(autocast: bool):
        w.zero_grad()
        torch.manual_seed(0)  # GPT-2's dropout: the same masks
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = w(**inputs(name)).loss
        loss.backward()
        grads = [p.grad for p in w.source.parameters()]
        assert all(g.dtype == torch.float32 for g in grads)
        return loss.item(), torch.cat([g.flatten() for g in grads])

    loss32, grad32 = loss_and_gradient(False)
    dtypes.clear()
    loss16, grad16 = loss_and_gradient(True)
    assert dtypes and set(dtypes) == {torch.bfloat16}  # the fast path ran, in bf16
    assert abs(loss16 - loss32) / loss32 < 1e-2 and torch.nn.functional.cosine_similarity(grad16, grad32, dim=0) > 0.95
    ids = inputs(name)["input_ids"]
    w.eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = w.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=4, do_sample=False, pad_token_id=0)
    assert out.shape == (2, ids.shape[1] + 4)
    expected = w(input_ids=ids).logits
    w.save_pretrained(tmp_path)
    assert torch.allclose(type(model).from_pretrained(tmp_path).eval()(input_ids=ids).logits, expected, rtol=1e-5, atol=1e-6)
