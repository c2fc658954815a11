"""eehw: early-exit neural networks from Brevitas to FPGA hardware."""

__version__ = "0.1.0"
