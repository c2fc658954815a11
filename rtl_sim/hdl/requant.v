// requant: element-wise requantisation of an AXI-Stream vector (eehw.golden.Quant on integers).
//
// Each of the N elements (element i at s_tdata[i*IN_W +: IN_W], IN_SIGNED) goes through
// round_shift_sat: y = clamp(round_half_even(x * 2^-SHIFT), OUT_MIN, OUT_MAX), OUT_W bits.
// The tag in s_tuser and s_tlast are passed through unchanged with their beat (m_tuser, m_tlast):
// requant works beat by beat, so any stream (pixel beats, folded vectors) goes through as is.
//
// Timing: a 1-deep pipeline register with full throughput.
//   - first-beat latency = last-beat latency = 1: a beat accepted at clock edge n is on m_* right
//     after edge n, so its output transfer is at edge n+1 at the earliest;
//   - a sample of B beats arriving back to back takes B cycles (one beat per cycle);
//   - II = 1: s_tready = !m_tvalid || m_tready, so a new beat is accepted in the same cycle the
//     held one is taken (this is a combinational path from m_tready to s_tready).
//
// Resources (Yosys 0.23 synth_xilinx -family xc7 -flatten, hdl_tools.synth_stats; IN_W = 16
// signed, SHIFT = 6, OUT_W = 4 ReLU, TAG_W = 8; no memory, no BRAM18 / LUTRAM):
//   N    LUT   FF
//   1     14   14
//   4     47   26
//   16   179   74        (about 11 LUT + 4 FF per element, 10 FF fixed: tag, tlast, valid)
`default_nettype none

module requant #(
    parameter integer N          = 4,    // elements per beat
    parameter integer IN_W       = 16,   // input element width
    parameter integer IN_SIGNED  = 1,    // input elements signed (1) or unsigned (0)
    parameter integer SHIFT      = 4,    // right shift with round half to even; negative = left shift
    parameter integer OUT_W      = 8,    // output element width
    parameter integer OUT_SIGNED = 1,
    parameter integer OUT_MIN    = -128, // saturation range (ReLU: OUT_MIN = 0)
    parameter integer OUT_MAX    = 127,
    parameter integer TAG_W      = 8     // tuser (sample tag) width
) (
    input  wire                 clk,
    input  wire                 rst,       // synchronous, active high

    input  wire [N*IN_W-1:0]    s_tdata,
    input  wire                 s_tvalid,
    output wire                 s_tready,
    input  wire [TAG_W-1:0]     s_tuser,
    input  wire                 s_tlast,

    output wire [N*OUT_W-1:0]   m_tdata,
    output wire                 m_tvalid,
    input  wire                 m_tready,
    output wire [TAG_W-1:0]     m_tuser,
    output wire                 m_tlast
);
    localparam integer X_W = IN_W + 1;  // one extra bit so unsigned inputs read as signed

    wire [N*OUT_W-1:0] y;

    genvar i;
    generate
        for (i = 0; i < N; i = i + 1) begin : g_elem
            wire [IN_W-1:0] xi = s_tdata[i*IN_W +: IN_W];
            wire [X_W-1:0]  xe = {(IN_SIGNED != 0) & xi[IN_W-1], xi};
            round_shift_sat #(
                .IN_W(X_W), .SHIFT(SHIFT), .OUT_W(OUT_W), .OUT_SIGNED(OUT_SIGNED),
                .OUT_MIN(OUT_MIN), .OUT_MAX(OUT_MAX)
            ) u_rss (
                .in(xe),
                .out(y[i*OUT_W +: OUT_W])
            );
        end
    endgenerate

    reg [N*OUT_W-1:0] data_q;
    reg [TAG_W-1:0]   tag_q;
    reg               last_q;
    reg               valid_q;

    assign s_tready = !valid_q || m_tready;

    always @(posedge clk) begin
        if (s_tvalid && s_tready) begin
            data_q <= y;
            tag_q  <= s_tuser;
            last_q <= s_tlast;
        end
        if (rst) begin
            valid_q <= 1'b0;
        end else if (s_tvalid && s_tready) begin
            valid_q <= 1'b1;
        end else if (m_tready) begin
            valid_q <= 1'b0;
        end
    end

    assign m_tdata  = data_q;
    assign m_tvalid = valid_q;
    assign m_tuser  = tag_q;
    assign m_tlast  = last_q;
endmodule

`default_nettype wire
