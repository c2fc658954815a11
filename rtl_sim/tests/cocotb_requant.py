"""cocotb module for requant: the same vector-stream driver as the MVU (cocotb_mvu.stream).

The driver is generic (packed words in, packed words out, handshake cycles recorded); the
expected values are computed and compared by test_requant.py.
"""

from cocotb_mvu import stream  # noqa: F401  (re-exported: cocotb collects tests from this module)
