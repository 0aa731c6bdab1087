"""Mutation check: break the code in ways the suite once missed, and see that a test fails.

Each mutation below is a one-line change that leaves the code running but wrong (the audit of
the suite's honesty found each of these passing once). The script copies HEAD into a scratch
git worktree, applies one mutation at a time, runs the tests meant to catch it and prints
CAUGHT / NOT CAUGHT. Exit status 1 if any is not caught. Not part of CI (~2 minutes):

    python .ci/mutations.py
"""

import pathlib
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
]


def run_tests(tests: list[str]) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:warnings", "-p", "no:cacheprovider", *tests]
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True)


def main() -> int:
    subprocess.run(["git", "worktree", "add", "-q", "--detach", str(ROOT), "HEAD"], cwd=REPO, check=True)
    missed = 0
    try:
        for name, path, old, new, tests in MUTATIONS:
            file = ROOT / path
            source = file.read_text()
            if source.count(old) != 1:
                raise SystemExit(f"error: mutation '{name}': the line to change is not found once in {path}")
            file.write_text(source.replace(old, new))
            try:
                result = run_tests(tests)
            finally:
                file.write_text(source)
            failed = [line for line in result.stdout.splitlines() if line.startswith("FAILED")]
            missed += result.returncode == 0
            print(f"{name}: {'CAUGHT by ' + failed[0][7:] if failed else 'NOT CAUGHT'}", flush=True)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(ROOT)], cwd=REPO, check=False)
    print(f"{len(MUTATIONS) - missed} of {len(MUTATIONS)} mutations caught")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
