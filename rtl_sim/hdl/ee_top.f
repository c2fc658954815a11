# The generated early-exit top: its blocks and the exit glue.
block.f
decision_unit.v
axis_fork.f
exit_gate.f
exit_merge.v
