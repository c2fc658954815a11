round_shift_sat.v
mvu.v
