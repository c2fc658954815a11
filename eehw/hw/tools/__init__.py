"""External tools: Verilator, Yosys, Vivado/Vitis, each run through one checked runner."""
