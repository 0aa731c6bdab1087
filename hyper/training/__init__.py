"""Training: LightningModules, the run report and the command line (imports Lightning).

``hyper.training.cli`` holds the command line (``train.py``); it is not imported here, so that
using the module or the report costs no argument parser.
"""

from hyper.training.classification import ImageClassifier, kernel_penalty
from hyper.training.continual import AccuracyMatrix, ContinualClassifier, OnePerTask
from hyper.training.language_model import BitsPerCharacter, CharLanguageModel
from hyper.training.report import RunReport, describe_network, format_report

__all__ = [
    "AccuracyMatrix",
    "BitsPerCharacter",
    "CharLanguageModel",
    "ContinualClassifier",
    "ImageClassifier",
    "OnePerTask",
    "RunReport",
    "describe_network",
    "format_report",
    "kernel_penalty",
]
