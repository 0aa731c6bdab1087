"""CharDataModule: formats, the vocabulary and its checkpoint round trip, <unk>, TBPTT batching."""

import io

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hyper.data import CharDataModule
from hyper.data.text import (
    UNK,
    UNK_ID,
    TBPTTWindows,
    batchify,
    build_vocab,
    decode_ptb,
    embedded_corpus,
    encode,
)


def setup_text(tmp_path, text: str, **kwargs) -> CharDataModule:
    path = tmp_path / "corpus.txt"
    path.write_text(text, encoding="utf-8")
    dm = CharDataModule(path=str(path), **kwargs)
    dm.setup("fit")
    return dm


def test_decode_ptb():
    ptb = " a e r _ b a n k n o t e \n\n t h e _ < u n k > _ N \n"
    assert decode_ptb(ptb) == "aer banknote\nthe <unk> N\n"


def test_ptb_rejects_ordinary_text():
    with pytest.raises(ValueError, match="line 2.*'hello'"):
        decode_ptb("a b\nhello world\n")


def test_ptb_directory(tmp_path):
    sentences = {"train": "the cat sat\non the mat\n", "valid": "a cat\n", "test": "the rat\n"}
    for name, text in sentences.items():
        encoded = "\n".join(" ".join(line.replace(" ", "_")) for line in text.splitlines()) + "\n"
        (tmp_path / f"ptb.char.{name}.txt").write_text(encoded)
    dm = CharDataModule(path=str(tmp_path), format="ptb", batch_size=1, seq_len=4)
    dm.setup("fit")
    assert "_" not in dm.vocab and " " in dm.vocab and "\n" in dm.vocab
    assert dm.vocab_size == len(set(sentences["train"])) + 1  # + <unk>
    x, y = next(iter(dm.train_dataloader()))
    assert dm.decode(x[0]) == "the " and dm.decode(y[0]) == "he c"
    test_inputs = torch.cat([x[0] for x, _ in dm.test_dataloader()])
    assert dm.decode(test_inputs) == "the \ufffdat"  # every input but the final newline; no r in train


def test_bytes_format(tmp_path):
    data = bytes([0, 255, 10, 200, 65]) * 40 + bytes([7, 8]) * 20  # not UTF-8; the tail is val + test
    path = tmp_path / "enwik.bin"
    path.write_bytes(data)
    dm = CharDataModule(path=str(path), format="bytes", batch_size=2, seq_len=5, split=(0.8, 0.1, 0.1))
    dm.setup("fit")
    assert dm.vocab_size == 5 + 1
    assert sorted(ord(c) for c in dm.vocab if c != UNK) == [0, 10, 65, 200, 255]
    x, _ = next(iter(dm.train_dataloader()))
    assert bytes(ord(dm.vocab[i]) for i in x[0].tolist()) == data[:5]
    test_ids = torch.cat([x for x, _ in dm.test_dataloader()], dim=1)
    assert (test_ids == UNK_ID).all()  # bytes 7 and 8 only occur after the training split


def test_unseen_characters_map_to_unk(tmp_path):
    text = "abcabcabc" * 20 + "xyz" * 4
    dm = setup_text(tmp_path, text, batch_size=2, seq_len=3, split=(0.8, 0.1, 0.1))
    assert set(dm.vocab) == {UNK, "a", "b", "c"} and dm.vocab[UNK_ID] == UNK
    ids = dm.encode("abz")
    assert ids.tolist()[:2] == [dm.vocab.index("a"), dm.vocab.index("b")] and ids[2] == UNK_ID
    assert dm.decode(ids) == "ab\ufffd"
    test_ids = torch.cat([x for x, _ in dm.test_dataloader()], dim=1)
    assert (test_ids == UNK_ID).any()


@pytest.mark.parametrize("text", ["λbz✓a", "bzaab"])  # beyond latin-1, and bytes only
def test_encode_maps_every_character(text):
    vocab = build_vocab("aλ✓b")
    assert vocab[UNK_ID] == UNK and vocab[1:] == sorted("aλ✓b")
    assert [vocab[i] for i in encode(text, vocab)] == [c if c in "aλ✓b" else UNK for c in text]


def test_vocab_travels_through_state_dict(tmp_path):
    first = setup_text(tmp_path, "hello world, " * 30, batch_size=2, seq_len=4)
    state = first.state_dict()
    buffer = io.BytesIO()
    torch.save(state, buffer)  # as in a Lightning checkpoint
    buffer.seek(0)
    restored_state = torch.load(buffer, weights_only=True)
    other_path = tmp_path / "other.txt"
    other_path.write_text("completely different text? " * 30)
    second = CharDataModule(path=str(other_path), batch_size=2, seq_len=4)
    second.setup("fit")
    assert second.vocab != first.vocab
    second.load_state_dict(restored_state)  # Lightning restores after setup, before the loaders
    assert second.vocab == first.vocab and second.vocab_size == first.vocab_size
    x, _ = next(iter(second.train_dataloader()))
    assert second.decode(x[0]) == "".join(c if c in first.vocab else "\ufffd" for c in "comp")


class _Bigram(L.LightningModule):
    """The smallest language model; records the first test batch it sees."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.logits = nn.Embedding(vocab_size, vocab_size)
        self.first_test_batch = None

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self.logits(x).flatten(0, 1), y.flatten())

    def validation_step(self, batch, batch_idx):
        pass

    def test_step(self, batch, batch_idx):
        if self.first_test_batch is None:
            self.first_test_batch = batch[0]

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_checkpoint_carries_the_vocabulary(tmp_path):
    trained_on = tmp_path / "train.txt"
    trained_on.write_text("to be or not to be, " * 40)
    dm = CharDataModule(path=str(trained_on), batch_size=2, seq_len=8)
    model = _Bigram(dm.vocab_size)
    flags = dict(logger=False, enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer = L.Trainer(max_steps=2, enable_checkpointing=False, **flags)
    trainer.fit(model, datamodule=dm)
    checkpoint = tmp_path / "lm.ckpt"
    trainer.save_checkpoint(checkpoint)
    # the same model tested on another corpus: its ids must follow the checkpoint's vocabulary
    other = tmp_path / "other.txt"
    text = "xyz " * 50 + "to be " * 100  # x, y, z would enter a vocabulary built from its train half
    other.write_text(text)
    test_dm = CharDataModule(path=str(other), batch_size=2, seq_len=8, split=(0.5, 0.0, 0.5))
    L.Trainer(**flags).test(model, datamodule=test_dm, ckpt_path=str(checkpoint))
    assert test_dm.vocab == dm.vocab
    assert torch.equal(model.first_test_batch[0], dm.encode(text[400:408]))  # the test half's start


def test_state_dict_refuses_another_format(tmp_path):
    dm = setup_text(tmp_path, "abc" * 100)
    other = CharDataModule(path=str(tmp_path / "corpus.txt"), format="bytes")
    with pytest.raises(ValueError, match="format"):
        other.load_state_dict(dm.state_dict())


def test_tbptt_batches_continue_each_other(tmp_path):
    text = "".join(chr(ord("a") + i % 26) + str(i % 7) for i in range(500))  # no short period
    dm = setup_text(tmp_path, text, batch_size=3, seq_len=7, split=(1.0, 0.0, 0.0))
    ids = encode(text, dm.vocab).long()
    length = len(ids) // 3
    batches = list(dm.train_dataloader())
    assert len(batches) == (length - 1) // 7  # whole windows only in training
    for k, ((x, y), (x_next, _)) in enumerate(zip(batches, batches[1:])):
        assert x.shape == (3, 7) and y.shape == (3, 7) and x.dtype == torch.int64
        assert torch.equal(y[:, :-1], x[:, 1:])  # targets are inputs one step ahead
        for b in range(3):  # the next batch's first input follows this batch's last input
            position = b * length + (k + 1) * 7  # in the whole id sequence
            assert x[b, -1] == ids[position - 1] and x_next[b, 0] == ids[position]
    streams = torch.cat([x for x, _ in batches], dim=1)
    assert torch.equal(streams, ids[: 3 * length].view(3, length)[:, : streams.shape[1]])


def test_evaluation_windows_cover_every_target():
    streams = torch.arange(2 * 23).view(2, 23)
    windows = TBPTTWindows(streams, seq_len=5, drop_last=False)
    targets = torch.cat([y for _, y in (windows[k] for k in range(len(windows)))], dim=1)
    assert len(windows) == 5 and torch.equal(targets, streams[:, 1:])
    assert len(TBPTTWindows(streams, seq_len=5, drop_last=True)) == 4


def test_batchify_makes_contiguous_streams():
    assert batchify(torch.arange(10), 3).tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]


def test_embedded_default_corpus():
    corpus = embedded_corpus()
    assert len(corpus) > 200_000 and corpus == embedded_corpus()  # real, and in a fixed order
    dm = CharDataModule(batch_size=8, seq_len=50)
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 50) and 60 < dm.vocab_size < 300
    assert dm.decode(x[0]) == corpus[:50]


def test_vocab_size_is_known_before_setup(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("abcd" * 50)
    assert CharDataModule(path=str(path)).vocab_size == 5  # a model can be sized from it


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"format": "words"}, "format"),
        ({"format": "ptb"}, "ptb"),
        ({"seq_len": 0}, "seq_len"),
        ({"split": (0.9, 0.2, 0.1)}, "split"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, name):
    with pytest.raises(ValueError, match=name):
        CharDataModule(**kwargs)


def test_too_small_split_is_a_clear_error(tmp_path):
    dm = setup_text(tmp_path, "abcdefgh" * 50, batch_size=16, seq_len=4)
    with pytest.raises(ValueError, match="val split.*batch_size"):
        dm.val_dataloader()


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="--data.path"):
        CharDataModule(path=str(tmp_path / "absent.txt")).setup("fit")
