"""Making a trained (or training) network smaller: quantisation, lottery tickets, structured
channel removal, low-rank factorisation of trained layers, fitting a weight source to trained
kernels. The core needs torch only; the Lightning callbacks that run these from the command
line live in ``hyper.training.compression``."""

from hyper.compression.channels import UnitGroup, dead_units, group_lasso, remove_units, unit_groups
from hyper.compression.factorize import factorize, factorize_layer
from hyper.compression.fit import compress_into, fit_source, reconstruction_error
from hyper.compression.quantize import BITS, Quantizer, dequantize, is_quantized, quantize

__all__ = [
    "BITS",
    "Quantizer",
    "UnitGroup",
    "compress_into",
    "dead_units",
    "dequantize",
    "factorize",
    "factorize_layer",
    "fit_source",
    "group_lasso",
    "is_quantized",
    "quantize",
    "reconstruction_error",
    "remove_units",
    "unit_groups",
]
