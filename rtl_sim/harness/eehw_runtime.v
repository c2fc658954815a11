// The smallest model Verilator builds: compiled once to get its runtime objects (verilated*.o),
// which every design build links instead of compiling them again (eehw.hw.rtl.verilate).
module eehw_runtime (input wire clk /*verilator public*/);
endmodule
