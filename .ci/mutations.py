"""Mutation check: break the code in ways the suite once missed, and see that a test fails.

Each mutation below is a one-line change that leaves the code running but wrong (the audits of
the suite's honesty found each of these passing once). The script copies HEAD into a scratch
git worktree, applies one mutation at a time, runs the tests meant to catch it and prints
CAUGHT / NOT CAUGHT. Exit status 1 if any is not caught, if its line is no longer in the code, or
if its tests could not run (pytest ending other than "tests failed": a test file missing, a
collection error). Not part of CI (a few minutes):

    python .ci/mutations.py                  # HEAD, as committed
    python .ci/mutations.py --working-tree   # HEAD plus this checkout's uncommitted changes
    python .ci/mutations.py --only selection # the mutations whose name contains the text

``--working-tree`` copies the checkout's modified and untracked (not ignored) files over the
scratch worktree and deletes there what is deleted here: a new test can be checked before it
is committed, without breaking the checkout that others may be running tests in.
"""

import argparse
import pathlib
import shutil
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parent.parent
ROOT = pathlib.Path(tempfile.mkdtemp(prefix="mutations-")) / "checkout"
# (what is broken, file, the line as it is, the line broken, the tests that must catch it)
MUTATIONS = [
 ("2 distillation ignores the teacher", "hyper/training/distillation.py", "F.log_softmax(teacher / temperature", "F.log_softmax(student.detach() / temperature", ["tests/test_distillation.py", "tests/test_lm_compression.py"]),
 ("3 sampling without eval()", "hyper/training/sampling.py", "    network.eval()  # no dropout while sampling", "    pass", ["tests/test_sampling.py"]),
 ("4 Tied init std doubled", "hyper/sources/direct.py", "torch.randn(group[0].shape) * group[0].init_std", "torch.randn(group[0].shape) * 2 * group[0].init_std", ["tests/test_init.py"]),
 ("5 count_parameters overwrites a part", "hyper/accounting.py", "breakdown[part] = breakdown.get(part, 0) + n", "breakdown[part] = n", ["tests/test_accounting.py"]),
 ("6 accuracy weighted", "hyper/training/classification.py", 'average="micro"', 'average="weighted"', ["tests/test_classification.py"]),
 ("7 ratio formula off (plain-equivalent + 1)", "hyper/accounting.py", "return self.plain_equivalent / self.trainable if", "return (self.plain_equivalent + 1) / self.trainable if", ["tests/test_wide_resnet.py", "tests/test_configs.py", "tests/test_readme.py"]),
 ("7 bpc in nats", "hyper/training/language_model.py", "return (self.nll / self.tokens / LN2).float()", "return (self.nll / self.tokens).float()", ["tests/test_language_model.py"]),
 ("7 plot without the front", "hyper/sweeps/plot.py", "ax.step([e.compression(axis) for e in front]", "(lambda *a, **k: None)([e.compression(axis) for e in front]", ["tests/test_sweeps.py", "tests/test_sweep_cli.py"]),
 ("8 a weight shared under two names generated", "hyper/selection.py", "(counts[id(p)] > 1) == shared", "(counts[id(p)] > 1 or not shared)", ["tests/test_wrap.py::test_a_weight_shared_under_two_names_is_never_generated"]),
 ("8 a buffer one weight still holds reused", "hyper/assembly.py", "use_count(t.untyped_storage()._cdata) > 2", "use_count(t.untyped_storage()._cdata) > 3", ["tests/test_assembly.py::test_one_weight_someone_holds_is_never_overwritten"]),
 ("8 unused weights keep stale gradients", "hyper/assembly.py", "                target.zero_()", "                pass", ["tests/test_assembly.py::test_weights_the_loss_leaves_out_get_zero_gradient_in_a_reused_buffer"]),
 ("8 a layer at break-even factorised", "hyper/compression/factorize.py", "factorized_size(layer, rank) < layer.weight.numel()", "factorized_size(layer, rank) <= layer.weight.numel()", ["tests/test_structured.py::test_a_layer_at_break_even_stays_as_it_is"]),
 ("8 QAT starts an epoch late", "hyper/training/compression/quantization.py", "trainer.current_epoch >= self.start_epoch", "trainer.current_epoch > self.start_epoch", ["tests/test_quantize.py::test_quantisation_aware_training_trains_quantised_from_start_epoch_on"]),
 ("8 channel penalty ends an epoch early", "hyper/training/compression/surgery.py", "trainer.current_epoch <= self.at_epoch", "trainer.current_epoch < self.at_epoch", ["tests/test_recompress.py::test_the_channel_penalty_acts_through_the_end_of_at_epoch_then_stops"]),
 ("8 step-based runs save last.ckpt only at epoch end", "hyper/training/checkpoints.py", "save_on_train_epoch_end=not step_based", "save_on_train_epoch_end=True", ["tests/test_checkpoints.py::test_a_step_based_run_writes_last_ckpt_after_every_validation"]),
]


def run_tests(tests: list[str]) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:warnings", "-p", "no:cacheprovider", *tests]
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True)


def git(*args: str) -> list[str]:
    """The NUL-separated paths a read-only git command prints in the checkout."""
    out = subprocess.run(["git", *args, "-z"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    return [path for path in out.split("\0") if path]


def copy_working_tree() -> None:
    """Make the scratch worktree hold what the checkout holds: its changed, new and deleted files."""
    for path in git("ls-files", "--modified", "--others", "--exclude-standard"):
        source, target = REPO / path, ROOT / path
        if source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
        elif not source.exists():  # deleted here
            target.unlink(missing_ok=True)


def check(name: str, path: str, old: str, new: str, tests: list[str]) -> bool:
    """Apply one mutation, run its tests, restore the file; whether a test failed."""
    file = ROOT / path
    source = file.read_text() if file.is_file() else ""
    if source.count(old) != 1:  # the code moved on: the mutation must be rewritten to match it
        print(f"{name}: LINE NOT FOUND once in {path}: {old!r}", flush=True)
        return False
    file.write_text(source.replace(old, new))
    try:
        result = run_tests(tests)
    finally:
        file.write_text(source)
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAILED")]
    if result.returncode == 1 and failed:
        print(f"{name}: CAUGHT by {failed[0][7:]}", flush=True)
        return True
    if result.returncode == 0:
        print(f"{name}: NOT CAUGHT", flush=True)
    else:  # the tests did not run: not evidence either way
        tail = "\n    ".join((result.stdout + result.stderr).strip().splitlines()[-5:])
        print(f"{name}: TESTS DID NOT RUN (pytest exit status {result.returncode})\n    {tail}", flush=True)
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--working-tree", action="store_true", help="check HEAD plus the checkout's uncommitted changes")
    parser.add_argument("--only", default="", help="run only the mutations whose name contains this text")
    args = parser.parse_args()
    chosen = [m for m in MUTATIONS if args.only in m[0]]
    subprocess.run(["git", "worktree", "add", "-q", "--detach", str(ROOT), "HEAD"], cwd=REPO, check=True)
    try:
        if args.working_tree:
            copy_working_tree()
        caught = sum(check(*mutation) for mutation in chosen)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(ROOT)], cwd=REPO, check=False)
    print(f"{caught} of {len(chosen)} mutations caught")
    return 0 if caught == len(chosen) else 1


if __name__ == "__main__":
    sys.exit(main())
