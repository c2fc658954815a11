"""cocotb module for dwc: the beat-stream driver of the MVU (cocotb_mvu.stream).

The driver is generic (packed beats with tuser/tlast in, beats out, handshake cycles recorded);
the expected beats and timing are computed and compared by test_dwc.py.
"""

from cocotb_mvu import stream  # noqa: F401  (re-exported: cocotb collects tests from this module)
