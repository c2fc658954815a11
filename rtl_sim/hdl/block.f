# Every module a generated block may instantiate (eehw.hw.stages: one per stage kind).
requant.f
mvu.f
sliding_window.v
maxpool.v
dwc.v
axis_fifo.v
