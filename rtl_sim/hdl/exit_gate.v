// exit_gate: the conditional buffer after an exit head.
//
// Holds the features of backbone block k (in a DEPTH-beat axis_fifo) until the matching decision
// of exit head k arrives (through a 2-beat axis_fifo), then pops one feature and one decision
// together:
//   - decision bit 0 (exit) = 1: the decision goes out on m_res (tdata = the DEC_W decision bits,
//     tuser = its tag) and the feature is dropped;
//   - decision bit 0 (exit) = 0: the feature goes out on m_feat (tdata/tuser as received) and
//     nothing goes to m_res.
// Both streams are in sample order, so a popped pair must carry the same tag; if it does not,
// `error` goes high and stays high until reset.
//
// Latency: the outputs are driven directly by the two FIFOs' output registers, so a pair whose
// later beat is accepted on clock edge n is presented (on m_feat or m_res) right after edge n:
// 1 cycle from the later of the two input handshakes, for either input. Throughput: one pair per
// cycle. s_feat_tready and s_dec_tready are register-only (FIFO occupancy): no combinational
// path from m_feat_tready / m_res_tready to either s_*_tready. m_*_tvalid are AND functions of
// registers only (never of any tready); m_*_tdata/tuser come straight from registers.
`default_nettype none

module exit_gate #(
    parameter integer FEAT_W = 32,  // feature beat width (one sample's feature vector)
    parameter integer DEC_W  = 16,  // decision beat width; bit 0 is the exit flag
    parameter integer TAG_W  = 8,   // sample tag width (tuser)
    parameter integer DEPTH  = 8    // feature FIFO depth in beats (>= 2): covers the head+decision latency
) (
    input  wire                 clk,
    input  wire                 rst,          // synchronous, active high

    input  wire                 s_feat_tvalid,
    output wire                 s_feat_tready,
    input  wire [FEAT_W-1:0]    s_feat_tdata,
    input  wire [TAG_W-1:0]     s_feat_tuser,

    input  wire                 s_dec_tvalid,
    output wire                 s_dec_tready,
    input  wire [DEC_W-1:0]     s_dec_tdata,
    input  wire [TAG_W-1:0]     s_dec_tuser,

    output wire                 m_feat_tvalid,
    input  wire                 m_feat_tready,
    output wire [FEAT_W-1:0]    m_feat_tdata,
    output wire [TAG_W-1:0]     m_feat_tuser,

    output wire                 m_res_tvalid,
    input  wire                 m_res_tready,
    output wire [DEC_W-1:0]     m_res_tdata,
    output wire [TAG_W-1:0]     m_res_tuser,

    output reg                  error         // a popped pair had different tags (sticky)
);
    wire                feat_valid;
    wire [FEAT_W-1:0]   feat_data;
    wire [TAG_W-1:0]    feat_tag;
    wire                dec_valid;
    wire [DEC_W-1:0]    dec_data;
    wire [TAG_W-1:0]    dec_tag;

    wire both     = feat_valid && dec_valid;
    wire is_exit  = dec_data[0];
    wire pop      = both && (is_exit ? m_res_tready : m_feat_tready);

    axis_fifo #(.W(FEAT_W), .TAG_W(TAG_W), .DEPTH(DEPTH)) feat_fifo (
        .clk(clk), .rst(rst),
        .s_tvalid(s_feat_tvalid), .s_tready(s_feat_tready), .s_tdata(s_feat_tdata), .s_tuser(s_feat_tuser),
        .m_tvalid(feat_valid), .m_tready(pop), .m_tdata(feat_data), .m_tuser(feat_tag),
        /* verilator lint_off PINCONNECTEMPTY */
        .count()
        /* verilator lint_on PINCONNECTEMPTY */
    );

    axis_fifo #(.W(DEC_W), .TAG_W(TAG_W), .DEPTH(2)) dec_fifo (
        .clk(clk), .rst(rst),
        .s_tvalid(s_dec_tvalid), .s_tready(s_dec_tready), .s_tdata(s_dec_tdata), .s_tuser(s_dec_tuser),
        .m_tvalid(dec_valid), .m_tready(pop), .m_tdata(dec_data), .m_tuser(dec_tag),
        /* verilator lint_off PINCONNECTEMPTY */
        .count()
        /* verilator lint_on PINCONNECTEMPTY */
    );

    assign m_feat_tvalid = both && !is_exit;
    assign m_feat_tdata  = feat_data;
    assign m_feat_tuser  = feat_tag;
    assign m_res_tvalid  = both && is_exit;
    assign m_res_tdata   = dec_data;
    assign m_res_tuser   = dec_tag;

    always @(posedge clk) begin
        if (rst)
            error <= 1'b0;
        else if (pop && feat_tag != dec_tag)
            error <= 1'b1;
    end
endmodule

`default_nettype wire
