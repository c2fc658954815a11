"""What runs on the board: the PYNQ driver and run-time threshold retuning."""
