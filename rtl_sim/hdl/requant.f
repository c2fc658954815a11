round_shift_sat.v
requant.v
