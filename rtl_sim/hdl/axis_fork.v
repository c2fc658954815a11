// axis_fork: 1 -> 2 broadcast of an AXI-Stream (tdata, tuser = tag, tlast).
//
// Every input beat (with its tlast and tag) is delivered exactly once to each of the two
// outputs, in order; each output may stall independently and no beat is lost; the outputs may take
// it in different cycles. The beats wait in a 2-beat LUTRAM axis_fifo; its head is on both
// outputs with one "already sent" flag per output (m_tvalid[i] = head valid & !sent[i]) and
// leaves the FIFO when both outputs have taken it. s_tready is the FIFO's (a register: no
// combinational path from m_tready to s_tready), and the FIFO sustains full throughput:
//   - latency: a beat accepted on clock edge n is on both outputs right after edge n (1 cycle);
//   - throughput: 1 beat per cycle when both outputs are ready (L cycles per L-beat sample);
//     for a sample fed back to back the first-beat and last-beat latency are both 1 cycle.
//     An output that stalls holds back the other one by at most 2 beats (the FIFO's depth).
// Output i uses m_tvalid[i], m_tready[i], m_tdata[i*W +: W], m_tuser[i*TAG_W +: TAG_W],
// m_tlast[i] (both outputs carry the same beat).
// Resources (Yosys 0.23 synth_xilinx xc7, see RESOURCE_POINTS in test_stream_plumbing.py):
//   W=8, TAG_W=8: 29 LUT, 8 FF;  W=64, TAG_W=8: 69 LUT, 8 FF (13 RAM32M: 6 beat bits in 4 LUTs).
//   An output register and a skid register (the module until 2026-12-06) cost 28 LUT, 38 FF
//   and 84 LUT, 150 FF: a LUT and two flip-flops per beat bit.
`default_nettype none

module axis_fork #(
    parameter integer W     = 8,   // tdata width
    parameter integer TAG_W = 8    // tuser (sample tag) width
) (
    input  wire                 clk,
    input  wire                 rst,       // synchronous, active high

    input  wire                 s_tvalid,
    output wire                 s_tready,
    input  wire [W-1:0]         s_tdata,
    input  wire [TAG_W-1:0]     s_tuser,
    input  wire                 s_tlast,

    output wire [1:0]           m_tvalid,
    input  wire [1:0]           m_tready,
    output wire [2*W-1:0]       m_tdata,
    output wire [2*TAG_W-1:0]   m_tuser,
    output wire [1:0]           m_tlast
);
    wire             head_valid;
    wire [W-1:0]     head_data;
    wire [TAG_W-1:0] head_tag;
    wire             head_last;
    reg  [1:0]       sent;        // output i has already taken the head beat

    wire [1:0] fire = m_tvalid & m_tready;
    wire       done = head_valid && ((sent | fire) == 2'b11);  // both outputs have it now
    /* verilator lint_off UNUSEDSIGNAL */
    wire [1:0] unused_count;
    /* verilator lint_on UNUSEDSIGNAL */

    axis_fifo #(.W(W), .TAG_W(TAG_W), .DEPTH(2), .RAM_STYLE("distributed")) u_beats (
        .clk(clk), .rst(rst),
        .s_tvalid(s_tvalid), .s_tready(s_tready), .s_tdata(s_tdata), .s_tuser(s_tuser), .s_tlast(s_tlast),
        .m_tvalid(head_valid), .m_tready(done), .m_tdata(head_data), .m_tuser(head_tag), .m_tlast(head_last),
        .count(unused_count)
    );

    assign m_tvalid = {2{head_valid}} & ~sent;
    assign m_tdata  = {2{head_data}};
    assign m_tuser  = {2{head_tag}};
    assign m_tlast  = {2{head_last}};

    always @(posedge clk) begin
        if (rst || done)
            sent <= 2'b00;
        else
            sent <= sent | fire;
    end
endmodule

`default_nettype wire
