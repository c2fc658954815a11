axis_fifo.v
exit_gate.v
