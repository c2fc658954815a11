"""hls4ml blocks (via QONNX), the decision-unit IP and the HLS top."""
