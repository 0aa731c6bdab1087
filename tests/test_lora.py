"""Generated LoRA (HyperLoRA) and plain LoRA on a frozen base model."""

from __future__ import annotations

import pytest
import torch
import transformers as tf
from torch import nn

from hyper import HyperLoRA, LoRA, count_parameters, materialize, wrap
from models import CharTransformer

ATTENTION = ["*.q_proj.weight", "*.v_proj.weight"]


def llama() -> nn.Module:
    torch.manual_seed(0)
    config = tf.LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=False)
    return tf.LlamaForCausalLM(config)


def trained(model: nn.Module, steps: int = 3, **condition: object) -> nn.Module:
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    ids = torch.randint(0, 50, (4, 12))
    for step in range(steps):
        task = {"task": step % 2} if not condition else condition
        loss = model(input_ids=ids, labels=ids, **task).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


def test_the_base_is_frozen_adopted_not_copied_and_untouched_by_training() -> None:
    base = llama()
    before = {n: p.detach().clone() for n, p in base.named_parameters()}
    q = base.model.layers[0].self_attn.q_proj.weight
    model = wrap(base, HyperLoRA(rank=2, num_tasks=2), include=ATTENTION)
    assert model.source.base["model__layers__0__self_attn__q_proj__weight"] is q  # the same tensor
    assert not any(p.requires_grad for p in model.target.parameters())
    assert not any(p.requires_grad for p in model.source.base.parameters())
    trained(model)
    assert all(torch.equal(before[n], p) for n, p in base.named_parameters())
    assert all(torch.equal(before[n], model.source.base[n.replace(".", "__")]) for n in model.source.provides)
    count = count_parameters(model)
    assert count.trainable == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert count.breakdown["not generated"] == 0
    assert count.plain_equivalent == 2 * sum(before[n].numel() for n in before)  # against a fine-tuned model per task


def test_adapters_start_at_zero_and_tasks_diverge_with_training() -> None:
    base = llama()
    ids = torch.randint(0, 50, (2, 8))
    expected = base(input_ids=ids).logits
    model = wrap(base, HyperLoRA(rank=2, num_tasks=2), include=ATTENTION)
    for task in range(2):
        torch.testing.assert_close(model(input_ids=ids, task=task).logits, expected)
    trained(model)
    assert (model(input_ids=ids, task=0).logits - model(input_ids=ids, task=1).logits).abs().max() > 1e-4


def test_materialize_generate_and_save_use_one_tasks_adapters(tmp_path) -> None:  # noqa: ANN001
    model = trained(wrap(llama(), HyperLoRA(rank=2, num_tasks=2), include=ATTENTION))
    ids = torch.randint(0, 50, (1, 6))
    plain = materialize(model, task=1)
    assert type(plain) is tf.LlamaForCausalLM
    torch.testing.assert_close(plain(input_ids=ids).logits, model(input_ids=ids, task=1).logits)
    with model.conditioned(task=1):
        tokens = model.generate(ids, max_new_tokens=5, do_sample=False)
        model.save_pretrained(tmp_path / "task1")
    assert torch.equal(tokens, plain.generate(ids, max_new_tokens=5, do_sample=False))
    loaded = tf.LlamaForCausalLM.from_pretrained(tmp_path / "task1")
    torch.testing.assert_close(loaded(input_ids=ids).logits, plain(input_ids=ids).logits)
    with pytest.raises(ValueError, match="conditioned"):  # which task's weights? it says so, writes nothing
        model.save_pretrained(tmp_path / "none")
    assert not (tmp_path / "none" / "model.safetensors").exists()


@pytest.mark.parametrize("source", [HyperLoRA(rank=2, num_tasks=3), HyperLoRA(rank=3, condition_dim=5)])
def test_per_sample_adapters_equal_each_sample_alone_on_a_transformer(source: HyperLoRA) -> None:
    torch.manual_seed(0)
    model = wrap(CharTransformer(vocab_size=20, num_layers=2, num_heads=2, embed_dim=32, context=16), source, include="blocks.*")
    with torch.no_grad():  # move the adapters off zero
        for p in model.source.parameters():
            if p.requires_grad:
                p.normal_(std=0.2)
    x = torch.randint(0, 20, (4, 10))
    condition = {"task": torch.tensor([0, 2, 1, 2])} if source.num_tasks else {"condition": torch.randn(4, 5)}
    together = model(x, **condition)[0]  # (logits, state)
    alone = torch.cat([model(x[i : i + 1], **{k: v[i] if k == "condition" else int(v[i]) for k, v in condition.items()})[0] for i in range(4)])
    assert ((together - alone).abs().max() / alone.abs().max()) <= 1e-5
    assert (alone[1] - alone[2]).abs().max() > 1e-4


def test_plain_lora_trains_only_its_factors_on_a_gpt2_conv1d() -> None:
    torch.manual_seed(0)
    config = tf.GPT2Config(vocab_size=50, n_embd=32, n_layer=1, n_head=2, n_positions=16, bos_token_id=0, eos_token_id=0)
    base = tf.GPT2LMHeadModel(config).eval()  # no dropout: outputs compared
    ids = torch.randint(0, 50, (2, 8))
    expected = base(input_ids=ids).logits
    model = wrap(base, LoRA(rank=2), include="*.c_attn.weight")  # Conv1D: stored (in, out)
    torch.testing.assert_close(model(input_ids=ids).logits, expected)
    assert count_parameters(model).trainable == 2 * (32 + 96)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(2):
        loss = model(input_ids=ids, labels=ids).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    torch.testing.assert_close(materialize(model)(input_ids=ids).logits, model(input_ids=ids).logits)


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: HyperLoRA(rank=2), "condition_dim or num_tasks"),
        (lambda: HyperLoRA(rank=0, num_tasks=2), "rank must be a positive integer"),
        (lambda: HyperLoRA(num_tasks=2, alpha=-1), "alpha must be a positive number"),
        (lambda: wrap(nn.Linear(8, 3), HyperLoRA(rank=4, num_tasks=2)), "rank must be at most 3"),
        (lambda: LoRA(rank=0), "rank must be a positive integer"),
        (lambda: wrap(nn.Linear(8, 3), HyperLoRA(rank=2, num_tasks=2))(torch.randn(1, 8), task=2), "task must be in [0, 2)"),
    ],
)
def test_bad_arguments(make, words: str) -> None:  # noqa: ANN001
    with pytest.raises(ValueError) as error:
        make()
    assert words in str(error.value)
