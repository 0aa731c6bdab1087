"""Character-level language-modelling data for truncated backpropagation through time (TBPTT).

The id stream of a split is cut into ``batch_size`` contiguous streams, (B, N), and read as
consecutive windows of ``seq_len``: batch k+1 continues batch k in every stream, so a model can
carry its hidden state across batches. Windows are never shuffled.

Under a distributed Trainer (``--trainer.devices N --trainer.strategy ddp``) the split is cut
into N·B streams and rank r reads streams r·B … (r+1)·B − 1, every window in order: each rank
has its own contiguous share, so the state it carries is still each batch's past (Lightning's
default, dealing windows to ranks in turn, would break that). ``batch_size`` is per device, as
for images: N devices train on N·B streams, the same streams one device reads with batch_size
N·B.

Formats:
    text   plain UTF-8 text; one file split contiguously by ``split`` (default 90/5/5)
    ptb    Penn Treebank characters: space-separated, ``_`` for a space, one sentence per line;
           a directory holding ptb.char.{train,valid,test}.txt (or one file, split by ``split``)
    bytes  enwik8-style raw bytes, vocabulary over byte values; the standard enwik8 split (first
           90M / 5M / 5M bytes) is the default ``split`` of (0.9, 0.05, 0.05)

The vocabulary is built from the training split only; id 0 is ``<unk>``, which every character
unseen in training maps to. It travels in checkpoints through ``state_dict``.
"""
from collections.abc import Collection
from pathlib import Path
from typing import Literal, get_args

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from hyper.checks import check_int
from hyper.data.order import resumable_loader, run_seed

Format = Literal["text", "ptb", "bytes"]
FORMATS = get_args(Format)
UNK = "<unk>"
UNK_ID = 0
SPLITS = ("train", "val", "test")
PTB_FILES = {"train": "ptb.char.train.txt", "val": "ptb.char.valid.txt", "test": "ptb.char.test.txt"}
ENCODE_CHUNK = 1 << 22  # characters encoded at a time: bounds the int64 temporaries


# corpus ------------------------------------------------------------------------------------


def embedded_corpus() -> str:
    """The English text of Python's documentation topics (``pydoc_data``), sorted by topic."""
    try:
        from pydoc_data.topics import topics
    except ImportError as err:  # some distributions strip it from the standard library
        raise FileNotFoundError(
            "the embedded corpus (Python's pydoc_data) is missing from this Python; "
            "pass --data.path FILE with a plain-text corpus"
        ) from err
    return "\n".join(topics[key] for key in sorted(topics))


def decode_ptb(text: str, *, source: str = "PTB text") -> str:
    """PTB character format → the real text: tokens joined, ``_`` → space, newline ends a sentence."""
    sentences = []
    for number, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        long_token = next((token for token in tokens if len(token) != 1), None)
        if long_token is not None:
            raise ValueError(
                f"{source} line {number} has the token {long_token!r}; format='ptb' expects single "
                f"characters separated by spaces (use format='text' for ordinary text)"
            )
        sentences.append("".join(tokens).replace("_", " "))
    return "".join(sentence + "\n" for sentence in sentences)


def split_contiguous(text: str, fractions: tuple[float, float, float]) -> dict[str, str]:
    """Train/val/test as consecutive pieces of ``text``: the first fraction, the next, the next."""
    n_train, n_val, n_test = (round(len(text) * fraction) for fraction in fractions)
    pieces = (text[:n_train], text[n_train : n_train + n_val], text[n_train + n_val :][:n_test])
    return dict(zip(SPLITS, pieces))


def read_splits(path: str | None, *, format: str, split: tuple[float, float, float]) -> dict[str, str]:
    """{split: text}; for ``bytes`` each byte is one character (latin-1), so ids are byte values."""
    if path is None:
        corpus = embedded_corpus()
        if format == "bytes":
            corpus = corpus.encode("utf-8").decode("latin-1")
        return split_contiguous(corpus, split)
    source = Path(path).expanduser()
    if format == "ptb" and source.is_dir():
        return read_ptb_directory(source)
    if not source.is_file():
        raise FileNotFoundError(
            f"--data.path {source} is not a file; pass a text file (or, with format='ptb', "
            f"a directory holding {', '.join(PTB_FILES.values())})"
        )
    if format == "ptb" and source.name in PTB_FILES.values():
        raise ValueError(
            f"--data.path {source} is one of the three PTB files; format='ptb' reads the directory "
            f"that holds {', '.join(PTB_FILES.values())}: pass {source.parent}"
        )
    return split_contiguous(read_corpus_file(source, format=format), split)


def read_ptb_directory(directory: Path) -> dict[str, str]:
    """The official three PTB character files, decoded to real text."""
    missing = [name for name in PTB_FILES.values() if not (directory / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{directory} lacks {', '.join(missing)}; format='ptb' needs "
            f"{', '.join(PTB_FILES.values())} in the directory given as --data.path"
        )
    files = {split: directory / name for split, name in PTB_FILES.items()}
    return {split: read_corpus_file(file, format="ptb") for split, file in files.items()}


def read_corpus_file(path: Path, *, format: str) -> str:
    """The whole file as one string: UTF-8 text, PTB decoded to text, or bytes as latin-1 characters."""
    raw = path.read_bytes()
    if not raw:
        raise ValueError(f"--data.path {path} is empty; pass a corpus with text in it")
    if format == "bytes":
        return raw.decode("latin-1")  # byte b becomes the character chr(b)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        # from None: the file's name and the advice are the message, not the codec's own words
        raise ValueError(
            f"--data.path {path} is not UTF-8 text (byte {err.start} cannot be decoded: {err.reason}); "
            f"use --data.format bytes for raw bytes"
        ) from None
    return decode_ptb(text, source=str(path)) if format == "ptb" else text


# vocabulary and ids ------------------------------------------------------------------------


def build_vocab(text: str) -> list[str]:
    """[``<unk>``, every character of ``text`` in code-point order]."""
    return [UNK, *sorted(set(text))]


def _code_points(text: str) -> Tensor:
    """(N,) code points of ``text``: uint8 when every character is below 256, else int64."""
    try:
        raw = bytearray(text.encode("latin-1"))  # 1 byte per character: the common, cheap case
        return torch.frombuffer(raw, dtype=torch.uint8) if raw else torch.zeros(0, dtype=torch.uint8)
    except UnicodeEncodeError:
        raw = bytearray(text.encode("utf-32-le"))
        return torch.frombuffer(raw, dtype=torch.int32).long()


def encode(text: str, vocab: list[str]) -> Tensor:
    """(N,) ids of ``text``'s characters under ``vocab``; characters not in it get ``UNK_ID``.

    Stored as int16 when the vocabulary allows (a quarter of int64's memory on enwik8).
    """
    lookup = _Lookup(vocab)
    dtype = torch.int16 if len(vocab) <= torch.iinfo(torch.int16).max else torch.int32
    out = torch.empty(len(text), dtype=dtype)
    for start in range(0, len(text), ENCODE_CHUNK):
        codes = _code_points(text[start : start + ENCODE_CHUNK])
        out[start : start + len(codes)] = lookup(codes)
    return out


class _Lookup:
    """Code points → ids, vectorised: a 256-entry table for bytes, a sorted search beyond."""

    def __init__(self, vocab: list[str]) -> None:
        id_of = {c: i for i, c in enumerate(vocab) if c != UNK}
        points = torch.tensor([ord(c) for c in id_of], dtype=torch.long)
        ids = torch.tensor(list(id_of.values()), dtype=torch.long)
        self.points, order = points.sort()  # searchsorted needs ascending code points
        self.ids = ids[order]
        self.byte_table = torch.full((256,), UNK_ID, dtype=torch.long)
        low = points < 256
        self.byte_table[points[low]] = ids[low]

    def __call__(self, codes: Tensor) -> Tensor:
        if codes.dtype == torch.uint8:
            return self.byte_table[codes.long()]
        if len(self.points) == 0:
            return torch.full_like(codes, UNK_ID)
        slot = torch.searchsorted(self.points, codes).clamp(max=len(self.points) - 1)
        return torch.where(self.points[slot] == codes, self.ids[slot], UNK_ID)


def batchify(ids: Tensor, batch_size: int) -> Tensor:
    """(N,) → (B, N // B): ``batch_size`` contiguous streams; the last N mod B ids are dropped."""
    length = len(ids) // batch_size
    return ids[: batch_size * length].view(batch_size, length)


class TBPTTWindows(Dataset):
    """Item k of (B, L) streams: x = streams[:, kT:(k+1)T], y = the same window one step later.

    Consecutive items are contiguous in every stream. ``drop_last`` drops a final window shorter
    than T (fixed shapes for training); evaluation keeps it so every id is scored.
    """

    def __init__(self, streams: Tensor, *, seq_len: int, drop_last: bool) -> None:
        self.streams, self.seq_len = streams, seq_len
        targets = streams.shape[1] - 1  # the last id of a stream is only ever a target
        self.length = targets // seq_len if drop_last else -(-targets // seq_len)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, k: int) -> tuple[Tensor, Tensor]:
        if not 0 <= k < self.length:
            raise IndexError(k)
        start = k * self.seq_len
        stop = min(start + self.seq_len, self.streams.shape[1] - 1)
        x = self.streams[:, start:stop]  # (B, T)
        y = self.streams[:, start + 1 : stop + 1]  # (B, T)
        return x.long(), y.long()


# the DataModule ----------------------------------------------------------------------------


def _check_split(split: tuple[float, float, float]) -> None:
    if len(split) != 3 or min(split) < 0 or split[0] <= 0 or sum(split) > 1 + 1e-9:
        raise ValueError(
            f"split must be three fractions (train, val, test), train > 0, summing to at most 1, got {split}"
        )


class CharDataModule(L.LightningDataModule):
    """Character (or byte) level language modelling over one corpus, batched for TBPTT.

    Batches are ``(x, y)``, int64 (B, T) each, ``y`` being ``x`` one step ahead. Within an epoch,
    batch k+1 continues batch k in every one of the B streams; a model should carry its hidden
    state from one batch to the next and reset it when a new epoch (or evaluation) starts.
    """

    unk_id = UNK_ID  # characters unseen in training

    def __init__(
        self,
        *,
        path: str | None = None,
        format: Format = "text",
        batch_size: int = 32,
        seq_len: int = 100,
        split: tuple[float, float, float] = (0.9, 0.05, 0.05),
        num_workers: int = 0,
    ) -> None:
        """
        Args:
            path: the corpus: a file, or for format 'ptb' a directory holding
                ptb.char.{train,valid,test}.txt. None: the embedded corpus (Python's own
                documentation topics, about 465k characters; needs no download).
            format: 'text' (UTF-8), 'ptb' (Penn Treebank characters) or 'bytes' (enwik8-style).
            batch_size: parallel streams B the id sequence is cut into.
            seq_len: TBPTT window T: time steps per batch.
            split: train/val/test fractions of a single file, taken as consecutive pieces in that
                order (unused for a PTB directory). (0.9, 0.05, 0.05) is enwik8's 90M/5M/5M.
            num_workers: DataLoader worker processes (0 is fine: a batch is one slice).
        """
        super().__init__()
        self.save_hyperparameters()  # checkpoints carry the data configuration
        if format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
        if path is None and format == "ptb":
            raise ValueError("format='ptb' needs --data.path: the directory of ptb.char.*.txt files")
        check_int("batch_size", batch_size)
        check_int("seq_len", seq_len)
        check_int("num_workers", num_workers, minimum=0)
        _check_split(tuple(split))
        self.path = path
        self.format = format
        self.batch_size = batch_size
        self.seq_len = seq_len
        self.split = tuple(split)
        self.num_workers = num_workers
        self._texts: dict[str, str] | None = None
        self._vocab: list[str] | None = None
        self._ids: dict[str, Tensor] = {}

    # vocabulary ----------------------------------------------------------------------------

    @property
    def vocab(self) -> list[str]:
        """id → character; id 0 is ``<unk>``. Built from the training split on first use."""
        if self._vocab is None:
            self._vocab = build_vocab(self._corpus()["train"])
        return self._vocab

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def state_dict(self) -> dict[str, object]:
        # Lightning stores this in every checkpoint: the vocabulary travels with the weights
        return {"vocab": list(self.vocab), "format": self.format}

    def load_state_dict(self, state_dict: dict[str, object]) -> None:
        if state_dict.get("format", self.format) != self.format:
            raise ValueError(
                f"the checkpoint's vocabulary is for format={state_dict['format']!r}, "
                f"this data module reads format={self.format!r}"
            )
        self._vocab = list(state_dict["vocab"])
        self._ids.clear()  # ids made under the old vocabulary are stale

    def encode(self, text: str) -> Tensor:
        """A prompt → (N,) int64 ids (real characters: spaces, not PTB's ``_``; bytes as UTF-8)."""
        if self.format == "bytes":
            text = text.encode("utf-8").decode("latin-1")
        return encode(text, self.vocab).long()

    def decode(self, ids: Tensor | list[int]) -> str:
        """(N,) ids → text; ``<unk>`` shows as U+FFFD, bytes are read back as UTF-8."""
        ids = torch.as_tensor(ids).flatten().tolist()
        if self.format == "bytes":
            # 0xFF never occurs in UTF-8, so an unknown byte decodes to U+FFFD as well
            raw = bytes(0xFF if i == UNK_ID else ord(self.vocab[i]) for i in ids)
            return raw.decode("utf-8", errors="replace")
        return "".join("\ufffd" if i == UNK_ID else self.vocab[i] for i in ids)

    # splits and loaders --------------------------------------------------------------------

    def check_files(self, stages: Collection[str]) -> None:
        """Raise ValueError or FileNotFoundError now, before a run starts, unless the corpus can be
        read and every split the ``stages`` need has enough characters for one batch."""
        needed = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        for split in dict.fromkeys(s for stage in stages for s in needed.get(stage, ())):
            self._windows(split, drop_last=split == "train")

    def setup(self, stage: str | None = None) -> None:
        # reads the corpus and builds the vocabulary; a checkpoint's vocabulary may replace it
        # afterwards (Lightning restores DataModule state after setup), so ids are made lazily
        _ = self.vocab

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", drop_last=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", drop_last=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", drop_last=False)

    def _corpus(self) -> dict[str, str]:
        if self._texts is None:
            self._texts = read_splits(self.path, format=self.format, split=self.split)
        return self._texts

    def _stream_ids(self, split: str) -> Tensor:
        # encoded lazily: the vocabulary may be replaced by a checkpoint's after setup
        if split not in self._ids:
            self._ids[split] = encode(self._corpus()[split], self.vocab)
        return self._ids[split]

    def _windows(self, split: str, *, drop_last: bool) -> TBPTTWindows:
        ids = self._stream_ids(split)
        where = f"the {split} split of {self.path or 'the embedded corpus'}"
        rank, ranks = self._rank_share()
        streams = self.batch_size * ranks
        on_devices = f" on {ranks} devices" if ranks > 1 else ""
        if len(ids) < 2 * streams:
            raise ValueError(
                f"{where} has {len(ids):,} characters, too few for {streams} streams "
                f"(batch_size={self.batch_size}{on_devices}) of at least 2; lower batch_size or change split"
            )
        mine = batchify(ids, streams)[rank * self.batch_size : (rank + 1) * self.batch_size]  # (B, L)
        windows = TBPTTWindows(mine, seq_len=self.seq_len, drop_last=drop_last)
        if len(windows) == 0:
            raise ValueError(
                f"{where}: its {streams} streams{on_devices} hold {len(ids) // streams} characters "
                f"each, fewer than seq_len + 1 = {self.seq_len + 1}; lower batch_size or seq_len"
            )
        return windows

    def _loader(self, split: str, *, drop_last: bool) -> DataLoader:
        windows = self._windows(split, drop_last=drop_last)
        # The streams are already this rank's share: a sampler over one replica, in order, tells
        # Lightning not to deal the windows out to the ranks again.
        sampler = DistributedSampler(windows, num_replicas=1, rank=0, shuffle=False) if self._rank_share()[1] > 1 else None
        # batch_size=None: each item already is a (B, T) batch; no shuffle keeps streams in order
        return resumable_loader(
            windows, shuffle=False, seed=run_seed(), sampler=sampler, batch_size=None, num_workers=self.num_workers
        )

    def _rank_share(self) -> tuple[int, int]:
        """(this process's rank, number of ranks) under a distributed Trainer, else (0, 1)."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size
