"""One hypernetwork for several tasks: generated LoRA against one LoRA per task and the frozen base.

Run (the committed rows, benchmarks/results/lora_tasks.jsonl; about 15 minutes on one CPU thread):

    python benchmarks/lora_tasks.py --seeds 0 1 2

``--smoke`` runs the same code on tiny sizes in seconds (tests/test_lora_tasks.py); ``--table``
prints the table of an existing results file and trains nothing; ``--shakespeare PATH`` adds
tinyshakespeare as a third task.

Tasks, character level, one vocabulary over all of them; each corpus is cut to ``--chars``
characters and split contiguously 90/10 into train and validation:

- ``pydoc``: Python's documentation topics (``hyper.data.text.embedded_corpus``), English prose;
- ``python``: Python source: ``STDLIB_FILES`` of this Python's standard library, in that order;
- ``shakespeare`` (only with ``--shakespeare``): the file given.

Both texts come with Python itself, so they differ between Python versions: every row records
each corpus's sha256 and the Python version.

Per model family (the project's ``CharTransformer`` and a Hugging Face ``LlamaForCausalLM`` built
from a config, both 4 layers × 128 wide, context 64):

1. a base is pretrained on a mix of the tasks (each batch holds windows of every task in equal
   shares) for ``--pretrain-steps`` steps with seed ``--base-seed``, then frozen;
2. per seed, on that same base (the seed sets the adapters' initialisation and the batches):
   - ``base``: the frozen base, no adaptation (one row per task: it does not depend on the seed);
   - ``lora``: one ``LoRA(rank=r)`` per task, each trained ``--steps`` steps on its task alone;
   - ``hyperlora``: ONE ``HyperLoRA(rank=r, num_tasks=T)`` trained T × ``--steps`` steps on
     batches mixing the tasks (a per-sample ``task`` tensor): the steps of the T LoRAs together,
     and as many windows of each task as its LoRA saw. Steps and tokens are matched, not time:
     a HyperLoRA step costs more (the generator, the per-sample path).
   Both adapt every linear weight of every block. The hypernetwork's hidden size is the smallest
   that gives it at least the trainable parameters of the T LoRAs together (``--hidden-dim``
   overrides), so parameters are matched too. Same optimiser and schedule for both.
3. each is scored by validation bits per character (cross-entropy in nats / ln 2) on every
   task's whole validation split, in non-overlapping windows of the context.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import statistics
import sys
import sysconfig
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import transformers as tf
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hyper import HyperLoRA, LoRA, count_parameters, wrap  # noqa: E402
from hyper.data.text import build_vocab, embedded_corpus, encode, split_contiguous  # noqa: E402
from models import CharTransformer  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "lora_tasks.jsonl"
STDLIB_FILES = ("argparse.py", "collections/__init__.py", "dataclasses.py", "enum.py", "functools.py",
                "inspect.py", "pathlib.py", "typing.py")
METHODS = {"base": "frozen base", "lora": "one LoRA per task", "hyperlora": "one HyperLoRA for all"}
DIFFERENCE = "HyperLoRA − LoRA, paired by seed"


# tasks -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Task:
    name: str
    sha256: str  # of the text, cut to size
    train: Tensor  # (N,) ids under the shared vocabulary
    val: Tensor


def python_source() -> str:
    """``STDLIB_FILES`` of this Python's standard library, concatenated in that order."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    return "".join(f"# {name}\n{(stdlib / name).read_text(encoding='utf-8')}" for name in STDLIB_FILES)


def corpora(chars: int, shakespeare: Path | None) -> dict[str, str]:
    """{task name: its text, the first ``chars`` characters}."""
    texts = {"pydoc": embedded_corpus(), "python": python_source()}
    if shakespeare is not None:
        texts["shakespeare"] = shakespeare.read_text(encoding="utf-8")
    short = [name for name, text in texts.items() if len(text) < chars]
    if short:
        raise ValueError(f"--chars {chars:,} is more than {', '.join(short)} holds; lower --chars")
    return {name: text[:chars] for name, text in texts.items()}


def make_tasks(texts: dict[str, str]) -> tuple[list[Task], int]:
    """The tasks over one vocabulary (every character of the training splits) and its size."""
    splits = {name: split_contiguous(text, (0.9, 0.1, 0.0)) for name, text in texts.items()}
    vocab = build_vocab("".join(split["train"] for split in splits.values()))
    tasks = [
        Task(name, hashlib.sha256(texts[name].encode()).hexdigest(), encode(s["train"], vocab), encode(s["val"], vocab))
        for name, s in splits.items()
    ]
    return tasks, len(vocab)


# model families ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Size:
    layers: int
    width: int
    heads: int
    context: int


def char_transformer(vocab_size: int, size: Size) -> nn.Module:
    return CharTransformer(vocab_size=vocab_size, num_layers=size.layers, num_heads=size.heads,
                           embed_dim=size.width, context=size.context)


def llama(vocab_size: int, size: Size) -> nn.Module:
    """A Llama as wide and deep as the transformer; its gated MLP (three matrices) is 8/3 wide,
    rounded up to a multiple of 8, so that both MLPs hold 8·C² weights."""
    config = tf.LlamaConfig(
        vocab_size=vocab_size, hidden_size=size.width, intermediate_size=8 * -(-size.width // 3),
        num_hidden_layers=size.layers, num_attention_heads=size.heads, num_key_value_heads=size.heads,
        max_position_embeddings=size.context, tie_word_embeddings=False,
    )
    return tf.LlamaForCausalLM(config)


@dataclass(frozen=True)
class Family:
    build: Callable[[int, Size], nn.Module]
    include: str  # the weights the adapters change: every linear weight of every block
    logits: Callable[..., Tensor]  # (model, x (B, T), **condition) -> (B, T, V)


FAMILIES = {
    "char-transformer": Family(char_transformer, "blocks.*", lambda model, x, **c: model(x, **c)[0]),
    "hf-llama": Family(llama, "model.layers.*", lambda model, x, **c: model(input_ids=x, **c).logits),
}


# training and scoring ----------------------------------------------------------------------


def batches(tasks: list[Task], owners: Callable[[], Tensor], context: int, seed: int) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """Endless (x, y, task) batches: x, y (B, context), random windows of the training ids of each
    sample's task, y one character ahead; ``owners()`` gives the (B,) task of each sample."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        task = owners()
        starts = [int(torch.randint(len(tasks[t].train) - context, (1,), generator=generator)) for t in task.tolist()]
        windows = torch.stack([tasks[t].train[s : s + context + 1] for t, s in zip(task.tolist(), starts)]).long()
        yield windows[:, :-1], windows[:, 1:], task


def mixed(batch: int, num_tasks: int) -> Callable[[], Tensor]:
    """Every task in equal shares (to one sample) in every batch."""
    return lambda: torch.arange(batch) % num_tasks


def only(batch: int, task: int) -> Callable[[], Tensor]:
    return lambda: torch.full((batch,), task)


def fit(model: nn.Module, family: Family, data: Iterator[tuple[Tensor, Tensor, Tensor]], *, steps: int, lr: float,
        condition: bool) -> None:
    """Adam on the trainable parameters, linear warm-up over 5% of the steps, then cosine to 0;
    ``condition``: pass each sample's task to the model."""
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * s / steps))
    )
    model.train()
    for _ in range(steps):
        x, y, task = next(data)
        logits = family.logits(model, x, **({"task": task} if condition else {}))
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    model.eval()


@torch.no_grad()
def bpc(model: nn.Module, family: Family, ids: Tensor, context: int, **condition: int) -> float:
    """Bits per character over ``ids`` in non-overlapping windows of ``context``."""
    n = (len(ids) - 1) // context
    x = ids[: n * context].view(n, context).long()
    y = ids[1 : n * context + 1].view(n, context).long()
    nats = sum(
        F.cross_entropy(family.logits(model, xs, **condition).flatten(0, 1), ys.flatten(), reduction="sum").item()
        for xs, ys in zip(x.split(64), y.split(64))
    )
    return nats / (n * context) / math.log(2)


def trainable(model: nn.Module) -> int:
    return count_parameters(model).trainable


def adapted(base: nn.Module, family: Family, spec: LoRA | HyperLoRA, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return wrap(copy.deepcopy(base), spec, include=family.include)  # the base itself stays unwrapped


def matched_hidden_dim(base: nn.Module, family: Family, rank: int, num_tasks: int) -> int:
    """The smallest HyperLoRA hidden size with at least the trainable parameters of T LoRAs
    (its count grows linearly with the hidden size)."""
    target = num_tasks * trainable(adapted(base, family, LoRA(rank=rank), 0))
    one, two = (trainable(adapted(base, family, HyperLoRA(rank=rank, num_tasks=num_tasks, hidden_dim=h), 0)) for h in (1, 2))
    return max(1, 1 + math.ceil((target - one) / (two - one)))


# the runs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    size: Size
    batch: int
    pretrain_steps: int
    steps: int  # per task
    rank: int
    hidden_dim: int | None
    lr: float
    base_seed: int


def pretrained(family: Family, tasks: list[Task], vocab_size: int, s: Settings) -> nn.Module:
    """A base trained on the mix of the tasks, then frozen."""
    torch.manual_seed(s.base_seed)
    base = family.build(vocab_size, s.size)
    data = batches(tasks, mixed(s.batch, len(tasks)), s.size.context, s.base_seed)
    fit(base, family, data, steps=s.pretrain_steps, lr=s.lr, condition=False)
    return base.requires_grad_(False)


def family_rows(name: str, tasks: list[Task], vocab_size: int, s: Settings, seeds: list[int]) -> Iterator[dict]:
    """Rows {method, task, seed, val_bpc, trainable_params, steps, seconds, ...}, as each run ends;
    ``trainable_params`` and ``steps`` are the method's over all tasks, ``seconds`` the run's own."""
    family, start = FAMILIES[name], time.perf_counter()
    base = pretrained(family, tasks, vocab_size, s)
    hidden_dim = s.hidden_dim or matched_hidden_dim(base, family, s.rank, len(tasks))
    for task in tasks:  # seconds: pretraining and scoring
        yield dict(method="base", task=task.name, seed=s.base_seed, val_bpc=bpc(base, family, task.val, s.size.context),
                   trainable_params=0, steps=0, seconds=time.perf_counter() - start)
    for seed in seeds:
        yield from lora_rows(base, family, tasks, s, seed)
        yield from hyperlora_rows(base, family, tasks, s, seed, hidden_dim)


def lora_rows(base: nn.Module, family: Family, tasks: list[Task], s: Settings, seed: int) -> Iterator[dict]:
    """One LoRA per task, trained on that task alone."""
    T = len(tasks)
    for t, task in enumerate(tasks):
        start = time.perf_counter()
        model = adapted(base, family, LoRA(rank=s.rank), seed)
        fit(model, family, batches(tasks, only(s.batch, t), s.size.context, seed), steps=s.steps, lr=s.lr, condition=False)
        yield dict(method="lora", task=task.name, seed=seed, val_bpc=bpc(model, family, task.val, s.size.context),
                   trainable_params=T * trainable(model), steps=T * s.steps, seconds=time.perf_counter() - start)


def hyperlora_rows(base: nn.Module, family: Family, tasks: list[Task], s: Settings, seed: int, hidden_dim: int) -> Iterator[dict]:
    """One HyperLoRA for all tasks, trained on batches mixing them, as many steps as the LoRAs together."""
    T, start = len(tasks), time.perf_counter()
    model = adapted(base, family, HyperLoRA(rank=s.rank, num_tasks=T, hidden_dim=hidden_dim), seed)
    fit(model, family, batches(tasks, mixed(s.batch, T), s.size.context, seed), steps=T * s.steps, lr=s.lr, condition=True)
    seconds = time.perf_counter() - start
    for t, task in enumerate(tasks):
        yield dict(method="hyperlora", task=task.name, seed=seed, val_bpc=bpc(model, family, task.val, s.size.context, task=t),
                   trainable_params=trainable(model), steps=T * s.steps, hidden_dim=hidden_dim, seconds=seconds)


# the table ---------------------------------------------------------------------------------


def cell(values: list[float]) -> str:
    """mean ± sample std (the mean alone for one value), three decimals."""
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def table(rows: list[dict]) -> str:
    """Markdown: per family, one line per method (mean ± std of val bpc per task over seeds), and
    the paired HyperLoRA − LoRA difference."""
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    lines = [f"| model | method | trainable | {' | '.join(f'{t} bpc' for t in tasks)} |", "|---|---|---:|" + "---:|" * len(tasks)]
    for family in dict.fromkeys(r["family"] for r in rows):
        mine = [r for r in rows if r["family"] == family]
        for method, label in METHODS.items():
            runs = [r for r in mine if r["method"] == method]
            cells = [cell([r["val_bpc"] for r in runs if r["task"] == t]) for t in tasks]
            lines.append(f"| {family} | {label} | {runs[0]['trainable_params']:,} | {' | '.join(cells)} |")
        bpc_of = {(r["method"], r["task"], r["seed"]): r["val_bpc"] for r in mine}
        seeds = sorted({r["seed"] for r in mine if r["method"] == "lora"})
        cells = [cell([bpc_of["hyperlora", t, seed] - bpc_of["lora", t, seed] for seed in seeds]) for t in tasks]
        lines.append(f"| {family} | {DIFFERENCE} | | {' | '.join(cells)} |")
    return "\n".join(lines)


# the command line --------------------------------------------------------------------------


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--families", nargs="+", choices=sorted(FAMILIES), default=list(FAMILIES))
    parser.add_argument("--chars", type=int, default=400_000, help="characters of each corpus")
    parser.add_argument("--shakespeare", type=Path, help="tinyshakespeare: a third task")
    parser.add_argument("--pretrain-steps", type=int, default=600)
    parser.add_argument("--steps", type=int, default=200, help="training steps per task")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--hidden-dim", type=int, help="HyperLoRA's hidden size (default: parameters matched)")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--base-seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS, help="rows, one JSON object a line (replaced)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds: checks the code runs")
    parser.add_argument("--table", action="store_true", help="print the table of --out; train nothing")
    args = parser.parse_args(argv)
    if args.smoke:
        args.chars, args.pretrain_steps, args.steps, args.batch, args.rank = 4_000, 4, 3, 4, 2
    return args


def settings(args: argparse.Namespace) -> Settings:
    size = Size(layers=1, width=16, heads=2, context=16) if args.smoke else Size(layers=4, width=128, heads=4, context=64)
    return Settings(size=size, batch=args.batch, pretrain_steps=args.pretrain_steps, steps=args.steps, rank=args.rank,
                    hidden_dim=args.hidden_dim, lr=args.lr, base_seed=args.base_seed)


def main(argv: list[str]) -> None:
    args = parse(argv)
    if args.table:
        print(table([json.loads(line) for line in args.out.read_text().splitlines()]))
        return
    torch.set_num_threads(args.threads)
    # the per-sample path runs attention under vmap, which falls back to a loop for CPU SDPA: slower, same result
    warnings.filterwarnings("ignore", message="There is a performance drop")
    texts = corpora(args.chars, args.shakespeare)
    tasks, vocab_size = make_tasks(texts)
    s = settings(args)
    common = dict(
        command=" ".join(["python", "benchmarks/lora_tasks.py", *argv]), corpus_sha256={t.name: t.sha256 for t in tasks},
        chars=args.chars, vocab_size=vocab_size, steps_per_task=s.steps, **asdict(s),
        python=sys.version.split()[0], torch=torch.__version__, transformers=tf.__version__,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    with args.out.open("w") as out:
        for family in args.families:
            for row in family_rows(family, tasks, vocab_size, s, args.seeds):
                row = {"family": family, **row, **{k: v for k, v in common.items() if k not in row}}
                print(f"[{family}] {row['method']} task={row['task']} seed={row['seed']}: val bpc {row['val_bpc']:.3f} "
                      f"({row['trainable_params']:,} trainable, {row['steps']} steps, {row['seconds']:.0f} s)", flush=True)
                out.write(json.dumps(row) + "\n")
                out.flush()
                rows.append(row)
    print(table(rows))


if __name__ == "__main__":
    main(sys.argv[1:])
