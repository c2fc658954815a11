// collect: P consecutive position beats -> one whole feature-map beat (inverse of the position
// stream that sliding_window + mvu produce).
//
// Input beat q of a sample (q = 0..P-1) holds N elements of E bits; element n goes to
// m_tdata[(q*N + n)*E +: E] of the sample's output beat (channels-last map: position q,
// channel n). m_tuser = the tag of the sample's first beat.
//
// Protocol check: every beat of a sample must carry the same tag, and s_tlast must be 1 exactly
// on beat P-1. A violation sets `error` (sticky until rst); the data still flows by beat count
// (every P beats make one output beat), so a broken stream is reported, never stalled.
//
// Structure (double buffered): beats 0..P-2 shift into the assembly register `acc` (clock
// enable only, no data muxes); beat P-1 goes with `acc` into the output register in the same
// edge, so `acc` is free again at once and the next sample's beats are accepted while the
// assembled output waits for m_tready.
// Timing:
//   LATENCY = 1: the output beat transfers one edge after beat P-1's input transfer at the
//     earliest (m_tvalid rises right after that edge);
//   cycles per sample = P with back-to-back input and m_tready high (one beat per cycle).
// s_tready = 1 except on beat P-1 while the output register is still full: a register-only
// function for P > 1; for P = 1 it also passes while the output is being taken (a
// combinational path from m_tready), so that P = 1 keeps one sample per cycle.
`default_nettype none

module collect #(
    parameter integer P     = 4,    // position beats per sample
    parameter integer N     = 8,    // elements per position beat
    parameter integer E     = 8,    // element width
    parameter integer TAG_W = 8     // tuser (sample tag) width
) (
    input  wire                 clk,
    input  wire                 rst,       // synchronous, active high

    input  wire [N*E-1:0]       s_tdata,
    input  wire                 s_tvalid,
    output wire                 s_tready,
    input  wire [TAG_W-1:0]     s_tuser,
    input  wire                 s_tlast,

    output wire [P*N*E-1:0]     m_tdata,
    output wire                 m_tvalid,
    input  wire                 m_tready,
    output wire [TAG_W-1:0]     m_tuser,

    output wire                 error      // sticky: a tag changed within a sample, or bad tlast
);
    localparam integer BW    = N * E;
    localparam integer CNT_W = (P > 1) ? $clog2(P) : 1;

    reg [CNT_W-1:0]   cnt;        // index of the next input beat within its sample
    reg [TAG_W-1:0]   tag0;       // tag of beat 0 of the sample being assembled
    reg [P*BW-1:0]    out_data;
    reg [TAG_W-1:0]   out_tag;
    reg               out_valid;
    reg               err_q;

    wire last_beat = (cnt == P[CNT_W-1:0] - 1'b1);
    wire first     = (cnt == {CNT_W{1'b0}});
    wire out_free  = !out_valid || ((P == 1) && m_tready);
    wire s_fire    = s_tvalid && s_tready;
    wire finish    = s_fire && last_beat;
    wire [TAG_W-1:0] tag = first ? s_tuser : tag0;   // the sample's tag
    wire bad       = (!first && (s_tuser != tag0)) || (s_tlast != last_beat);

    assign s_tready = !last_beat || out_free;
    assign m_tdata  = out_data;
    assign m_tvalid = out_valid;
    assign m_tuser  = out_tag;
    assign error    = err_q;

    generate
        if (P > 1) begin : g_acc
            reg [(P-1)*BW-1:0] acc;   // beats 0..P-2, beat q at [q*BW +: BW] once full
            if (P > 2) begin : g_shift
                always @(posedge clk)
                    if (s_fire && !last_beat)
                        acc <= {s_tdata, acc[(P-1)*BW-1:BW]};
            end else begin : g_one
                always @(posedge clk)
                    if (s_fire && !last_beat)
                        acc <= s_tdata;
            end
            always @(posedge clk)
                if (finish)
                    out_data <= {s_tdata, acc};
        end else begin : g_single
            always @(posedge clk)
                if (finish)
                    out_data <= s_tdata;
        end
    endgenerate

    always @(posedge clk) begin
        if (s_fire && first)
            tag0 <= s_tuser;
        if (finish)
            out_tag <= tag;
    end

    always @(posedge clk) begin
        if (rst) begin
            cnt       <= {CNT_W{1'b0}};
            out_valid <= 1'b0;
            err_q     <= 1'b0;
        end else begin
            if (s_fire)
                cnt <= last_beat ? {CNT_W{1'b0}} : cnt + 1'b1;
            if (finish)
                out_valid <= 1'b1;
            else if (m_tready)
                out_valid <= 1'b0;
            if (s_fire && bad)
                err_q <= 1'b1;
        end
    end
endmodule

`default_nettype wire
