// axis_fork: 1 -> 2 broadcast of an AXI-Stream (tdata, tuser = tag, tlast).
//
// Every input beat (with its tlast and tag) is delivered exactly once to each of the two
// outputs, in order; each output may stall independently and no beat is lost; the outputs may take
// it in different cycles. The beat sits in an output register with one "already sent" flag per
// output (m_tvalid[i] = out_valid & !sent[i]); the register is freed when both outputs have taken
// it. A skid register behind it keeps s_tready a register-only signal (no combinational path
// from m_tready to s_tready) while sustaining full throughput:
//   - latency: a beat accepted on clock edge n is on both outputs right after edge n (1 cycle);
//   - throughput: 1 beat per cycle when both outputs are ready (L cycles per L-beat sample);
//     for a sample fed back to back the first-beat and last-beat latency are both 1 cycle.
//     An output that stalls holds back the other one by at most 2 beats (register + skid).
// Output i uses m_tvalid[i], m_tready[i], m_tdata[i*W +: W], m_tuser[i*TAG_W +: TAG_W],
// m_tlast[i] (both outputs carry the same beat).
// Resources (Yosys 0.23 synth_xilinx xc7, see RESOURCE_POINTS in test_stream_plumbing.py):
//   W=8, TAG_W=8: 28 LUT, 38 FF;  W=64, TAG_W=8: 84 LUT, 150 FF;  no memory.
//   i.e. 2*(W+TAG_W+1) + 4 FF (output + skid register) and about W+TAG_W+1 + 11 LUT.
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
    localparam integer BEAT_W = W + TAG_W + 1;

    reg               out_valid;
    reg  [BEAT_W-1:0] out_beat;
    reg  [1:0]        sent;        // output i has already taken out_beat
    reg               skid_valid;
    reg  [BEAT_W-1:0] skid_beat;

    wire [1:0] fire     = m_tvalid & m_tready;
    wire       done     = out_valid && ((sent | fire) == 2'b11);  // both outputs have it now
    wire       out_load = !out_valid || done;
    wire       in_fire  = s_tvalid && !skid_valid;

    assign s_tready = !skid_valid;
    assign m_tvalid = {2{out_valid}} & ~sent;
    assign m_tdata  = {2{out_beat[BEAT_W-1 -: W]}};
    assign m_tuser  = {2{out_beat[TAG_W:1]}};
    assign m_tlast  = {2{out_beat[0]}};

    always @(posedge clk) begin
        if (rst) begin
            out_valid  <= 1'b0;
            sent       <= 2'b00;
            skid_valid <= 1'b0;
        end else begin
            if (out_load) begin
                out_valid  <= skid_valid || in_fire;
                sent       <= 2'b00;
                skid_valid <= 1'b0;
            end else begin
                sent <= sent | fire;
                if (in_fire)
                    skid_valid <= 1'b1;
            end
        end
    end

    always @(posedge clk) begin
        if (out_load) begin
            if (skid_valid)
                out_beat <= skid_beat;
            else if (in_fire)
                out_beat <= {s_tdata, s_tuser, s_tlast};
        end
        if (in_fire && !out_load)
            skid_beat <= {s_tdata, s_tuser, s_tlast};
    end
endmodule

`default_nettype wire
