"""Making a trained (or training) network smaller: quantisation, lottery tickets, structured
channel removal, low-rank factorisation of trained layers, fitting a weight source to trained
kernels. The core needs torch only; the Lightning callbacks that run these from the command
line live in ``hyper.training.compression``."""

from hyper.compression.quantize import BITS, Quantizer, dequantize, is_quantized, quantize

__all__ = ["BITS", "Quantizer", "dequantize", "is_quantized", "quantize"]
