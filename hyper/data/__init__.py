"""LightningDataModules: digits (embedded default), CIFAR-10/100 (official binary files), text.

Imported explicitly (``from hyper.data import DigitsDataModule``): this subpackage needs
Lightning, which ``import hyper`` alone never pulls in.
"""
from hyper.data.cifar import CIFAR10DataModule, CIFAR100DataModule
from hyper.data.digits import DigitsDataModule
from hyper.data.split_digits import SplitDigitsDataModule
from hyper.data.text import CharDataModule

__all__ = ["CIFAR10DataModule", "CIFAR100DataModule", "CharDataModule", "DigitsDataModule", "SplitDigitsDataModule"]
