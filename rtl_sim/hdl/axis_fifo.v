// axis_fifo: AXI-Stream FIFO (tdata, tuser = tag, tlast).
//
// Capacity: exactly DEPTH beats (DEPTH >= 2). One beat per cycle in and out, sustained.
// m_tvalid is a flip-flop; s_tready = !(array full) is a register-only signal: no combinational
// path from m_tready to s_tready (nor from any tready to m_tvalid).
//
// RAM_STYLE picks where the beats (W + TAG_W + 1 bits each) are stored:
//   "registers"   : flip-flops, read asynchronously at the read pointer (a multiplexer);
//   "distributed" : LUTRAM (RAM32M / RAM64M / RAM128X1D...), read asynchronously;
//     both: m_tdata/m_tuser/m_tlast are the array's read port, no output register. A register
//     with a bypass for the empty FIFO would cost a LUT and two flip-flops per beat bit, more
//     than the LUTRAM that holds 32 beats (RAM32M: 0.67 LUT a bit);
//   "block"       : RAMB18E1 / RAMB36E1 (synchronous read) + a 2-beat output register FIFO
//                   (prefetch); m_* come from those registers. Needs DEPTH >= 4 (a 2-beat array
//                   at least, for one beat per cycle through the RAM; smaller DEPTH falls back
//                   to "registers");
//   "auto"        : DEPTH <= 2 -> registers;
//                   DEPTH > 64 and DEPTH*(W+TAG_W+1) >= 1024 bits -> block;
//                   otherwise distributed.
// Array sizes: registers/distributed keep all DEPTH beats in the array, block keeps DEPTH-2.
//
// Timing (output always ready, FIFO empty/idle), every style:
//   - latency: a beat accepted on clock edge n is on m_* right after edge n and can be taken
//     on edge n+1 (1 cycle; registers/distributed: written at edge n and read asynchronously;
//     block: the empty FIFO bypasses its RAM). For a sample of L beats fed back to back the
//     first-beat and the last-beat latency are both 1 cycle;
//   - throughput: 1 beat per cycle (L cycles per L-beat sample), also when draining the RAM
//     after a stall (the block style reads one beat ahead into its prefetch registers).
// count = beats held (accepted, not yet taken), 0..DEPTH.
//
// Resources, Yosys 0.23 `synth_xilinx -family xc7 -flatten -noiopad`, measured with
// `.venv/bin/python rtl_sim/tests/test_stream_plumbing.py` (RESOURCE_POINTS there); LUT
// includes the LUTRAM LUTs; beat = W + TAG_W + 1 bits. "before" is the same FIFO with an
// output register and bypass (registers/distributed, until 2026-12-06):
//   DEPTH x beat  RAM_STYLE           LUT    FF  BRAM18  LUTRAM  memory cells   before LUT/FF
//     2 x 32      auto (registers)     41    70     0       0    -                  40/67
//    16 x 16      auto (distributed)   46    18     0      12    3 RAM32M           55/34
//    64 x 32      distributed          77    26     0      44    11 RAM64M         112/58
//    64 x 32      registers           893  2074     0       0    - (what LUTRAM saves)
//   512 x 36      auto / block         97   103     1       0    1 RAMB18E1
//  2048 x 36      auto (block)        103   109     4       0    2 RAMB36E1
// The fixed part (pointers, counters, `count`) is about 25 LUT and 2*log2(DEPTH) + 2 FF, plus
// for block the two output registers (2 beats of FF) and their multiplexers (about a LUT per
// beat bit); the storage goes into the memory.
`default_nettype none

module axis_fifo #(
    parameter integer W         = 8,      // tdata width
    parameter integer TAG_W     = 8,      // tuser (sample tag) width
    parameter integer DEPTH     = 4,      // capacity in beats, >= 2 (any integer)
    parameter [8*11-1:0] RAM_STYLE = "auto"  // "auto" | "block" | "distributed" | "registers"
) (
    input  wire                 clk,
    input  wire                 rst,       // synchronous, active high

    input  wire                 s_tvalid,
    output wire                 s_tready,
    input  wire [W-1:0]         s_tdata,
    input  wire [TAG_W-1:0]     s_tuser,
    input  wire                 s_tlast,

    output wire                 m_tvalid,
    input  wire                 m_tready,
    output wire [W-1:0]         m_tdata,
    output wire [TAG_W-1:0]     m_tuser,
    output wire                 m_tlast,

    output wire [CNT_W-1:0]     count
);
    function integer clog2;
        input integer value;
        integer v;
        begin
            v = value - 1;
            clog2 = 0;
            while (v > 0) begin
                clog2 = clog2 + 1;
                v = v >> 1;
            end
        end
    endfunction

    localparam integer BEAT_W = W + TAG_W + 1;
    localparam integer BITS   = DEPTH * BEAT_W;
    // 0 = registers, 1 = distributed, 2 = block
    localparam integer STYLE =
        (RAM_STYLE == "registers")   ? 0 :
        (RAM_STYLE == "distributed") ? 1 :
        (RAM_STYLE == "block")       ? ((DEPTH >= 4) ? 2 : 0) :
        (DEPTH <= 2)                 ? 0 :
        (DEPTH > 64 && BITS >= 1024) ? 2 : 1;
    localparam integer OUT_Q     = (STYLE == 2) ? 2 : 0;          // output registers
    localparam integer RAM_DEPTH = DEPTH - OUT_Q;                 // beats in the array
    localparam integer ADDR_W    = (clog2(RAM_DEPTH) < 1) ? 1 : clog2(RAM_DEPTH);
    localparam integer CNT_W     = clog2(DEPTH + 1);
    localparam integer RCNT_W    = CNT_W;                         // ram_count width
    localparam integer      LAST_I    = RAM_DEPTH - 1;
    localparam [ADDR_W-1:0] LAST_ADDR = LAST_I[ADDR_W-1:0];

    generate
        if (DEPTH < 2 || (RAM_STYLE != "auto" && RAM_STYLE != "block" && RAM_STYLE != "distributed"
                          && RAM_STYLE != "registers")) begin : g_bad_param
            axis_fifo_DEPTH_must_be_at_least_2_and_RAM_STYLE_auto_block_distributed_or_registers u_error ();
        end
    endgenerate

    wire [BEAT_W-1:0] in_beat = {s_tdata, s_tuser, s_tlast};
    wire [BEAT_W-1:0] out_beat;

    // ------------------------------------------------------------------ RAM pointers
    reg  [ADDR_W-1:0] wr_ptr;
    reg  [ADDR_W-1:0] rd_ptr;
    reg  [RCNT_W-1:0] ram_count;
    wire              ram_full  = (ram_count == RAM_DEPTH[RCNT_W-1:0]);
    wire              in_fire   = s_tvalid && !ram_full;
    wire              ram_write;   // in_fire and the beat goes to the array
    wire              ram_read;    // the array head is read (leaves the array) this cycle
    wire [BEAT_W-1:0] ram_q;       // registers/distributed: async read; block: sync read

    assign s_tready = !ram_full;

    always @(posedge clk) begin
        if (rst) begin
            wr_ptr    <= {ADDR_W{1'b0}};
            rd_ptr    <= {ADDR_W{1'b0}};
            ram_count <= {RCNT_W{1'b0}};
        end else begin
            if (ram_write)
                wr_ptr <= (wr_ptr == LAST_ADDR) ? {ADDR_W{1'b0}} : wr_ptr + 1'b1;
            if (ram_read)
                rd_ptr <= (rd_ptr == LAST_ADDR) ? {ADDR_W{1'b0}} : rd_ptr + 1'b1;
            if (ram_write && !ram_read)
                ram_count <= ram_count + 1'b1;
            else if (ram_read && !ram_write)
                ram_count <= ram_count - 1'b1;
        end
    end

    // ------------------------------------------------------------------ the array
    generate
        if (STYLE == 2) begin : g_bram
            (* ram_style = "block" *)
            reg [BEAT_W-1:0] mem [0:RAM_DEPTH-1];
            reg [BEAT_W-1:0] q;
            always @(posedge clk) begin
                if (ram_write)
                    mem[wr_ptr] <= in_beat;
            end
            always @(posedge clk) begin
                if (ram_read)
                    q <= mem[rd_ptr];
            end
            assign ram_q = q;
        end else if (STYLE == 1) begin : g_lutram
            (* ram_style = "distributed" *)
            reg [BEAT_W-1:0] mem [0:RAM_DEPTH-1];
            always @(posedge clk) begin
                if (ram_write)
                    mem[wr_ptr] <= in_beat;
            end
            assign ram_q = mem[rd_ptr];
        end else begin : g_regs
            (* ram_style = "logic" *)
            reg [BEAT_W-1:0] mem [0:RAM_DEPTH-1];
            always @(posedge clk) begin
                if (ram_write)
                    mem[wr_ptr] <= in_beat;
            end
            assign ram_q = mem[rd_ptr];
        end
    endgenerate

    // ------------------------------------------------------------------ output stage
    generate
        if (STYLE == 2) begin : g_out2
            // Two output registers (o0 = head on m_*, o1 behind it). o0 takes o1, the array's
            // read data (which lands one cycle after the read: rd_pend) or the input (bypass:
            // array empty, no read in flight, o0/o1 empty after this cycle's pop); o1 takes
            // only read data. A read is issued only when its beat will find room:
            // (beats in o0/o1 after this edge) + rd_pend <= 1.
            reg  [BEAT_W-1:0] o0, o1;
            reg               v0, v1;
            reg               rd_pend;
            wire              ram_empty = (ram_count == {RCNT_W{1'b0}});
            wire              pop    = v0 && m_tready;
            wire [1:0]        occ    = {1'b0, v0} + {1'b0, v1};
            wire [1:0]        after  = occ - {1'b0, pop};            // o0/o1 beats after the pop
            wire              room   = (after + {1'b0, rd_pend}) <= 2'd1;
            wire              bypass = in_fire && ram_empty && !rd_pend && (after == 2'd0);
            wire              push   = rd_pend || bypass;
            wire [BEAT_W-1:0] push_beat = rd_pend ? ram_q : in_beat;

            assign ram_read  = !ram_empty && room;
            assign ram_write = in_fire && !bypass;
            assign out_beat  = o0;
            assign m_tvalid  = v0;
            assign count     = ram_count + {{(CNT_W-1){1'b0}}, rd_pend}
                             + {{(CNT_W-1){1'b0}}, v0} + {{(CNT_W-1){1'b0}}, v1};

            always @(posedge clk) begin
                if (rst) begin
                    v0      <= 1'b0;
                    v1      <= 1'b0;
                    rd_pend <= 1'b0;
                end else begin
                    rd_pend <= ram_read;
                    v0      <= (after != 2'd0) || push;
                    v1      <= (after == 2'd2) || (after == 2'd1 && push);
                end
            end

            always @(posedge clk) begin
                // o0: keeps its beat unless popped; then takes o1 or the pushed beat.
                if (pop || !v0)
                    o0 <= v1 ? o1 : push_beat;
                // o1: takes read data that lands behind o0 (a bypass only ever goes to o0).
                if (rd_pend && after == 2'd1)
                    o1 <= ram_q;
            end
        end else begin : g_out1
            // No output register: m_tdata/m_tuser/m_tlast are the array's asynchronous read at
            // rd_ptr (LUTRAM or a register multiplexer), so a beat written at edge n is on m_*
            // right after edge n (1-cycle latency with no bypass path) and the array holds all
            // DEPTH beats. An output register with a bypass multiplexer would cost a LUT and two
            // flip-flops per beat bit, more than the LUTRAM itself (RAM32M: 0.67 LUT a bit).
            // m_tvalid is still a flip-flop: it is set whenever the array holds a beat after
            // the edge.
            reg v0;
            wire pop = v0 && m_tready;

            assign ram_read  = pop;
            assign ram_write = in_fire;
            assign out_beat  = ram_q;
            assign m_tvalid  = v0;
            assign count     = ram_count;

            always @(posedge clk) begin
                if (rst)
                    v0 <= 1'b0;
                else
                    v0 <= in_fire || (ram_count > {{(RCNT_W-1){1'b0}}, pop});
            end
        end
    endgenerate

    assign m_tdata = out_beat[BEAT_W-1 -: W];
    assign m_tuser = out_beat[TAG_W:1];
    assign m_tlast = out_beat[0];
endmodule

`default_nettype wire
