"""Sweep files: a base config plus a grid of overrides and seeds, expanded into points.

A sweep file (YAML)::

    base: ../default.yaml            # a train.py config, relative to this file
    metric: test_acc                 # what the summary and the plot show
    seeds: [0, 1]
    overrides: {trainer.max_epochs: 10}          # applied to every point
    methods:
      - name: hyper                              # a line on the plot
        vary: {model.init_args.network.init_args.source.init_args.embedding_dim: [4, 8, 16]}
      - name: lowrank                            # swaps the whole network
        set: {model.init_args.network: {class_path: models.WideResNet,
              init_args: {depth: 16, source: {class_path: hyper.LowRank}}}}
        vary: {model.init_args.network.init_args.source.init_args.rank: [1, 2]}
      - name: pruned
        set: {trainer.callbacks: [{class_path: hyper.training.pruning.MagnitudePruning}]}
        vary: {trainer.callbacks.0.init_args.amount: [0.5, 0.9]}
      - name: distilled                          # a small net taught by a trained one
        teacher_from: plain                      # that method's tested checkpoint, same seed
        set: {model.init_args.network.init_args.hidden_size: 32}
    compare_to: plain                            # optional: compression = plain's parameters ÷ each point's

Keys are dotted paths into the config; a value *replaces* what is there (a dict too, so a
method can swap the whole model). Top-level keys starting with ``_`` are ignored: a place to
define YAML anchors (``_wrn: &wrn {...}``) that methods reuse. Within a method, ``vary`` is a Cartesian product; the points
are every method's products, times the seeds, in file order.

``teacher_from: METHOD`` makes a method's points distil from that (earlier) method's point of
the same seed: its tested checkpoint becomes ``model.init_args.teacher`` when the point runs.
``compare_to: METHOD`` measures every point's compression against that method's network
(its parameters ÷ the point's trainable, non-zero when pruned): a smaller or distilled
network, whose own plain-equivalent is itself, then sits where it belongs on the curve. For
points sharing the reference's architecture it is their usual compression ratio.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hyper.checks import read_yaml_mapping


@dataclass(frozen=True)
class Point:
    """One run of a sweep: a method, its knob values, a seed and the full config."""

    method: str
    knobs: dict[str, Any]
    seed: int
    config: dict[str, Any] = field(repr=False)
    teacher_from: str | None = None

    @property
    def key(self) -> str:
        """Hash of the full config, seed and teacher: what makes two points the same run."""
        identity = {"config": self.config, "seed": self.seed}
        if self.teacher_from is not None:  # its teacher is set when it runs, not in its config
            identity["teacher_from"] = self.teacher_from
        canonical = json.dumps(identity, sort_keys=True, default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        knobs = ", ".join(f"{k}={v}" for k, v in self.knobs.items())
        return f"{self.method}({knobs}) seed={self.seed}"


@dataclass(frozen=True)
class Sweep:
    """A loaded sweep file.

    Args:
        name: the sweep's name (its file stem).
        base: the base train.py config, as a dict.
        methods: the method blocks (``name``, ``set``, ``vary``).
        seeds: seeds every point runs with.
        overrides: dotted overrides applied to every point.
        metric: the metric the summary and the plot show (``test_acc``, ``test_bpc``...).
        compare_to: the method whose network every point's compression is measured against
            (None: each point's own plain-equivalent).
    """

    name: str
    base: dict[str, Any]
    methods: list[dict[str, Any]]
    seeds: list[int] = field(default_factory=lambda: [0])
    overrides: dict[str, Any] = field(default_factory=dict)
    metric: str = "test_acc"
    compare_to: str | None = None

    def points(self) -> list[Point]:
        """Every point, in file order: methods, then their grid, then seeds."""
        return [
            point
            for method in self.methods
            for knobs in _product(method.get("vary", {}))
            for point in self._seeded(method, knobs)
        ]

    def _seeded(self, method: dict[str, Any], knobs: dict[str, Any]) -> list[Point]:
        config = copy.deepcopy(self.base)
        for path, value in {**self.overrides, **method.get("set", {}), **knobs}.items():
            set_path(config, path, copy.deepcopy(value))
        short = {path.rsplit(".", 1)[-1]: value for path, value in knobs.items()}
        teacher = method.get("teacher_from")
        return [Point(method["name"], short, seed, config, teacher) for seed in self.seeds]


def load_sweep(path: str | Path) -> Sweep:
    """Read and check a sweep file; its ``base`` is resolved relative to the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sweep file not found: {path}")
    spec = read_yaml_mapping(path, what="sweep file")
    # Keys starting with "_" are free: a place to define YAML anchors the methods reuse.
    allowed = {"base", "methods", "seeds", "overrides", "metric", "compare_to"}
    unknown = {key for key in spec if not key.startswith("_")} - allowed
    if unknown:
        raise ValueError(f"{path}: unknown sweep keys {sorted(unknown)}; allowed: {', '.join(sorted(allowed))}")
    if not isinstance(spec.get("methods"), list) or not spec["methods"]:
        raise ValueError(f"{path}: a sweep needs a non-empty 'methods' list")
    earlier: list[str] = []
    for method in spec["methods"]:
        _check_method(path, method, earlier)
        earlier.append(method["name"])
    if spec.get("compare_to") is not None and spec["compare_to"] not in earlier:
        raise ValueError(f"{path}: compare_to {spec['compare_to']!r} is not one of the methods ({', '.join(earlier)})")
    seeds = spec.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ValueError(f"{path}: seeds must be a non-empty list of integers, got {seeds!r}")
    if not isinstance(spec.get("overrides") or {}, dict):
        raise ValueError(f"{path}: overrides must be a mapping of dotted keys to values")
    base = {}
    if spec.get("base"):
        base_path = path.parent / spec["base"]
        if not base_path.is_file():
            raise FileNotFoundError(f"{path}: its base config {base_path} does not exist")
        base = read_yaml_mapping(base_path, what=f"{path}: base config")
    return Sweep(
        name=path.stem,
        base=base,
        methods=spec["methods"],
        seeds=list(seeds),
        overrides=spec.get("overrides", {}) or {},
        metric=spec.get("metric", "test_acc"),
        compare_to=spec.get("compare_to"),
    )


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` (1-based) -> (i, n)."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"shard must look like i/n (e.g. 2/4), got {text!r}") from None
    if not 1 <= index <= count:
        raise ValueError(f"shard must satisfy 1 <= i <= n, got {text!r}")
    return index, count


def shard(points: list[Point], index: int, count: int) -> list[Point]:
    """Shard ``index`` of ``count`` (1-based): every count-th point, so shards get mixed work.

    A point that distils from another method (``teacher_from``) goes to the shard of its
    teacher's point of the same seed, after it in file order: it then never reaches its turn
    before the teacher has finished on another shard (it would stop with "run it first").
    """
    home: dict[tuple[str, int], int] = {}
    assigned, dealt = [], 0
    for point in points:
        teacher = home.get((point.teacher_from, point.seed)) if point.teacher_from else None
        if teacher is None:
            teacher, dealt = dealt % count, dealt + 1
        home.setdefault((point.method, point.seed), teacher)
        assigned.append(teacher)
    return [point for point, at in zip(points, assigned) if at == index - 1]


def set_path(config: dict[str, Any], path: str, value: Any) -> None:
    """Set ``config["a"]["b"] = value`` for ``path="a.b"``, creating dicts on the way.

    A number indexes an existing list: ``trainer.callbacks.0.init_args.amount``.
    """
    *parents, last = path.split(".")
    node: Any = config
    for part in parents:
        if isinstance(node, list):
            node = node[_index(node, part, path)]
            continue
        if not isinstance(node.get(part), (dict, list)):
            node[part] = {}
        node = node[part]
    if isinstance(node, list):
        node[_index(node, last, path)] = value
    else:
        node[last] = value


def _index(node: list, part: str, path: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ValueError(f"{path}: {part!r} is not an index of a list of {len(node)}")
    return int(part)


def _product(vary: dict[str, list[Any]]) -> list[dict[str, Any]]:
    keys = list(vary)
    return [dict(zip(keys, values)) for values in itertools.product(*(vary[k] for k in keys))]


def _check_method(path: Path, method: Any, earlier: list[str]) -> None:
    if not isinstance(method, dict) or "name" not in method:
        raise ValueError(f"{path}: every method needs a 'name', got {method!r}")
    unknown = set(method) - {"name", "set", "vary", "teacher_from"}
    if unknown:
        raise ValueError(
            f"{path}: method {method['name']!r} has unknown keys {sorted(unknown)}; allowed: name, set, vary, teacher_from"
        )
    for key in ("set", "vary"):
        if not isinstance(method.get(key) or {}, dict):
            raise ValueError(f"{path}: method {method['name']!r}: {key} must be a mapping of dotted keys")
    teacher = method.get("teacher_from")
    if teacher is not None and teacher not in earlier:
        raise ValueError(f"{path}: method {method['name']!r}: teacher_from {teacher!r} must name a method above it")
    for key, values in method.get("vary", {}).items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"{path}: method {method['name']!r}: vary.{key} must be a non-empty list")
