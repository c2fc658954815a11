// exit_gate: the conditional buffer after an exit head, for multi-beat samples.
//
// Features of backbone block k arrive as a stream (FEAT_W bits per beat, tlast on a sample's
// last beat, the sample's tag on every beat) into a DEPTH-beat axis_fifo (RAM_STYLE passed
// through). Decisions of exit head k arrive one beat per sample (DEC_W bits, bit 0 = exit,
// tag in tuser) into a DEC_DEPTH-beat FIFO (registers at 2, LUTRAM above). For the decision at the head of that FIFO the
// gate pops the sample's feature beats up to and including the one with tlast:
//   - exit = 0: every beat goes out on m_feat (tdata, tuser, tlast as received);
//   - exit = 1: every beat is dropped and the decision goes out once on m_res
//     (tdata = the DEC_W decision bits, tuser = its tag). m_res is offered as soon as the
//     decision is at the head (it does not wait for the feature beats); the decision leaves
//     when m_res has taken it and the sample's tlast beat has been dropped.
// Forwarding/dropping starts only once the decision is there. The next decision is handled
// from the cycle after the previous sample's tlast beat (no bubble between samples).
// Every popped feature beat must carry its decision's tag; if one does not, `error` goes high
// and stays high until reset.
//
// Queueing: the gate pops its samples in order, so a forwarded sample waiting for a slow next
// block would hold up the exiting samples behind it. The generated top therefore puts the
// queue for bursts of non-exiting samples after the gate (an axis_fifo of
// eehw.hw.timing.FORWARD_QUEUE_SAMPLES samples in front of the next block): the gate itself
// needs only the sample being decided plus the beats that arrive while its head decides.
//
// DEPTH requirement (deadlock freedom): the head needs a sample's whole stream before it can
// decide, and it gets it only if the gate's FIFO can take it all, so
//     DEPTH >= L + D
// where L = beats per sample and D = the head's latency in beats (beats the fork pushes into
// this FIFO from the sample's tlast until the decision reaches s_dec, i.e. the head's
// last-beat latency in cycles at one beat per cycle). DEPTH >= L is the hard minimum (less
// deadlocks: the fork stalls before the head has seen tlast); DEPTH >= L + D also keeps the
// backbone from stalling while the head decides.
//
// Timing (outputs always ready, idle gate, the sample's L feature beats already buffered;
// edge n = the edge that transfers the decision on s_dec):
//   - m_res (exit = 1): on m_* after edge n, transferred on edge n+1 (1 cycle);
//   - m_feat (exit = 0): first beat transferred on edge n+1 (1 cycle), last beat (tlast) on
//     edge n+L (L cycles), one beat per cycle while forwarding;
//   - an exited sample's beats are dropped at one beat per cycle too (edges n+1 .. n+L);
//   - back-to-back samples with their decisions ready: L cycles per sample (exit or not);
//   - if the decision is already at the head, a feature beat accepted on edge m goes out on
//     m_feat at edge m+1 (the feature FIFO's 1-cycle latency): cut-through.
// s_feat_tready and s_dec_tready are register-only (FIFO occupancy); m_*_tvalid are ANDs of
// registers only; m_*_tdata/tuser/tlast are the FIFOs' outputs (registers for a block-RAM
// FIFO, the asynchronous read port of a LUTRAM or register FIFO).
//
// Resources: the feature FIFO (axis_fifo with W = FEAT_W, see its header) plus a DEC_DEPTH-beat
// FIFO for decisions, the tag compare and control. Yosys 0.23 synth_xilinx xc7
// (RESOURCE_POINTS in test_stream_plumbing.py; LUT includes LUTRAM), DEC_W = 16, TAG_W = 8:
//   FEAT_W x DEPTH   feature memory        LUT   FF  BRAM18  LUTRAM
//     32 x 64        auto -> distributed   139   82     0      56   (14 RAM64M)
//     32 x 512       auto -> block         139  169     2       0   (1 RAMB36E1: 41-bit beats)
//    128 x 256       auto -> block         231  358     4       0   (2 RAMB36E1)
`default_nettype none

module exit_gate #(
    parameter integer    FEAT_W    = 32,     // feature beat width
    parameter integer    DEC_W     = 16,     // decision beat width; bit 0 is the exit flag
    parameter integer    TAG_W     = 8,      // sample tag width (tuser)
    parameter integer    DEPTH     = 64,     // feature FIFO depth in beats, >= 2 and >= L + D (see above)
    parameter integer    DEC_DEPTH = 2,      // decisions queued (samples whose features wait here), >= 2
    parameter [8*11-1:0] RAM_STYLE = "auto"  // feature FIFO memory: "auto" | "block" | "distributed" | "registers"
) (
    input  wire                 clk,
    input  wire                 rst,          // synchronous, active high

    input  wire                 s_feat_tvalid,
    output wire                 s_feat_tready,
    input  wire [FEAT_W-1:0]    s_feat_tdata,
    input  wire [TAG_W-1:0]     s_feat_tuser,
    input  wire                 s_feat_tlast,

    input  wire                 s_dec_tvalid,
    output wire                 s_dec_tready,
    input  wire [DEC_W-1:0]     s_dec_tdata,
    input  wire [TAG_W-1:0]     s_dec_tuser,

    output wire                 m_feat_tvalid,
    input  wire                 m_feat_tready,
    output wire [FEAT_W-1:0]    m_feat_tdata,
    output wire [TAG_W-1:0]     m_feat_tuser,
    output wire                 m_feat_tlast,

    output wire                 m_res_tvalid,
    input  wire                 m_res_tready,
    output wire [DEC_W-1:0]     m_res_tdata,
    output wire [TAG_W-1:0]     m_res_tuser,

    output reg                  error         // a feature beat's tag differed from its decision's (sticky)
);
    wire                feat_valid;
    wire [FEAT_W-1:0]   feat_data;
    wire [TAG_W-1:0]    feat_tag;
    wire                feat_last;
    wire                dec_valid;
    wire [DEC_W-1:0]    dec_data;
    wire [TAG_W-1:0]    dec_tag;

    reg  res_sent;   // the head decision (exit = 1) has gone out on m_res

    wire is_exit   = dec_data[0];
    wire res_fire  = m_res_tvalid && m_res_tready;
    wire res_done  = res_sent || res_fire;
    // Pop a feature beat: forwarded (taken by m_feat) or dropped (exit; the tlast beat only
    // once the result has gone out, so the decision and its sample leave together).
    wire feat_pop  = feat_valid && dec_valid &&
                     (is_exit ? (!feat_last || res_done) : m_feat_tready);
    wire dec_pop   = feat_pop && feat_last;

    axis_fifo #(.W(FEAT_W), .TAG_W(TAG_W), .DEPTH(DEPTH), .RAM_STYLE(RAM_STYLE)) feat_fifo (
        .clk(clk), .rst(rst),
        .s_tvalid(s_feat_tvalid), .s_tready(s_feat_tready), .s_tdata(s_feat_tdata),
        .s_tuser(s_feat_tuser), .s_tlast(s_feat_tlast),
        .m_tvalid(feat_valid), .m_tready(feat_pop), .m_tdata(feat_data), .m_tuser(feat_tag),
        .m_tlast(feat_last),
        /* verilator lint_off PINCONNECTEMPTY */
        .count()
        /* verilator lint_on PINCONNECTEMPTY */
    );

    axis_fifo #(.W(DEC_W), .TAG_W(TAG_W), .DEPTH(DEC_DEPTH), .RAM_STYLE("auto")) dec_fifo (
        .clk(clk), .rst(rst),
        .s_tvalid(s_dec_tvalid), .s_tready(s_dec_tready), .s_tdata(s_dec_tdata),
        .s_tuser(s_dec_tuser), .s_tlast(1'b1),
        .m_tvalid(dec_valid), .m_tready(dec_pop), .m_tdata(dec_data), .m_tuser(dec_tag),
        /* verilator lint_off PINCONNECTEMPTY */
        .m_tlast(),
        .count()
        /* verilator lint_on PINCONNECTEMPTY */
    );

    assign m_feat_tvalid = feat_valid && dec_valid && !is_exit;
    assign m_feat_tdata  = feat_data;
    assign m_feat_tuser  = feat_tag;
    assign m_feat_tlast  = feat_last;
    assign m_res_tvalid  = dec_valid && is_exit && !res_sent;
    assign m_res_tdata   = dec_data;
    assign m_res_tuser   = dec_tag;

    always @(posedge clk) begin
        if (rst) begin
            res_sent <= 1'b0;
            error    <= 1'b0;
        end else begin
            if (dec_pop)
                res_sent <= 1'b0;
            else if (res_fire)
                res_sent <= 1'b1;
            if (feat_pop && feat_tag != dec_tag)
                error <= 1'b1;
        end
    end
endmodule

`default_nettype wire
