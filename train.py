"""Train, test and report: ``python train.py`` runs the default (a HyperResNet on the digits).

    python train.py                                   # fit + test + report, configs/default.yaml
    python train.py --config cifar10_fast --data.data_dir /tmp/data
    python train.py fit --config configs/cifar10_hyper_wrn40_2.yaml --trainer.precision bf16-mixed
    python train.py test --ckpt_path runs/.../checkpoints/best.ckpt
    python train.py --ckpt_path runs/.../checkpoints/last.ckpt      # resume the default run
    python train.py sweep --config configs/sweeps/digits.yaml; python train.py sample --help
    python train.py --help
"""

from pathlib import Path

from hyper.training.cli import main

if __name__ == "__main__":
    raise SystemExit(main(config_dir=Path(__file__).resolve().parent / "configs"))
