"""Hardware: the stage plan, timing, RTL and HLS generators, tool runners and measurement."""
