# axis_fork holds its beats in an axis_fifo.
axis_fifo.v
axis_fork.v
