"""The Verilog design: generator, weight memories, AXI IP wrapper and Verilator simulation."""
