// sliding_window: whole feature map in -> one receptive-field beat per output position
// (the im2col of eehw.golden.Conv with zero padding, 1-D or 2-D, square kernel).
//
// Layout (channels-last). Input beat: element (p, c) of the IN_H x IN_W x C map, p = h*IN_W + w,
// at s_tdata[(p*C + c)*E +: E]. Output beat for output position q = oh*OUT_W + ow (row-major):
// kernel offset k = kh*K + kw (1-D: k = kw) and channel c at m_tdata[(k*C + c)*E +: E], the input
// element at row oh*STRIDE - PAD + kh, column ow*STRIDE - PAD + kw, or 0 if that is padding.
//   OUT_W = (IN_W + 2*PAD - K)/STRIDE + 1, OUT_H = (IN_H + 2*PAD - K)/STRIDE + 1 (1-D: 1),
//   P = OUT_H * OUT_W beats per sample; m_tuser = the sample's tag on every beat, m_tlast = 1 on
//   the last position (q = P-1).
//
// Implementation (shift based, no wide multiplexers): the accepted map waits in an input buffer
// `buf` (second buffer: the next map is accepted while the current one is emitted). Starting a
// sample copies it, zero padded, into the working register `win` of HP x WP elements
// (HP = IN_H + 2*PAD, WP = IN_W + 2*PAD, flat row-major). The window of the current position is
// always at fixed taps kh*WP + kw of `win`, so m_tdata is plain register outputs. Each output
// handshake shifts `win` down by STRIDE elements, or by STRIDE*WP - (OUT_W-1)*STRIDE elements at
// the end of an output row (2-D only), zeros shifting in at the top. Per bit of `win` this is a
// 3:1 mux (load, shift, row jump) plus clock enable; `buf` and the counters have no data muxes.
//
// Timing (consumer always ready):
//   LATENCY = 2: a map transferred at clock edge t is copied into `win` at edge t+1 (when the
//     unit is idle), so its first window transfers at edge t+2 at the earliest;
//   cycles per sample = P: the last window of sample s and the copy of sample s+1 happen on the
//     same edge, so windows leave back to back, one per cycle, across samples, as long as the
//     next map has arrived (it can, any time after the previous copy: `buf` is free for P-1
//     cycles of every sample).
// s_tready = !buf_full, a register; for P = 1 it is also high while `buf` is being copied in the
// same cycle (a combinational path from m_tready), so that P = 1 keeps one sample per cycle.
`default_nettype none

module sliding_window #(
    parameter integer DIMS   = 2,   // 1 (length IN_W, IN_H must be 1) or 2 (IN_H x IN_W)
    parameter integer C      = 1,   // channels
    parameter integer IN_H   = 8,   // input height (1 for 1-D)
    parameter integer IN_W   = 8,   // input width (the length for 1-D)
    parameter integer K      = 3,   // kernel size (K x K for 2-D)
    parameter integer STRIDE = 1,
    parameter integer PAD    = 1,   // zero padding on every side of each spatial dimension
    parameter integer E      = 8,   // element width
    parameter integer TAG_W  = 8    // tuser (sample tag) width
) (
    input  wire                       clk,
    input  wire                       rst,       // synchronous, active high

    input  wire [IN_H*IN_W*C*E-1:0]   s_tdata,
    input  wire                       s_tvalid,
    output wire                       s_tready,
    input  wire [TAG_W-1:0]           s_tuser,

    output wire [((DIMS == 2) ? K*K : K)*C*E-1:0] m_tdata,
    output wire                       m_tvalid,
    input  wire                       m_tready,
    output wire [TAG_W-1:0]           m_tuser,
    output wire                       m_tlast
);
    localparam integer KH    = (DIMS == 2) ? K : 1;          // kernel rows
    localparam integer HP    = IN_H + ((DIMS == 2) ? 2 * PAD : 0);
    localparam integer WP    = IN_W + 2 * PAD;
    localparam integer OUT_W = (WP - K) / STRIDE + 1;
    localparam integer OUT_H = (DIMS == 2) ? (HP - K) / STRIDE + 1 : 1;
    localparam integer P     = OUT_H * OUT_W;
    localparam integer PADH  = (DIMS == 2) ? PAD : 0;        // padding rows on top
    localparam integer EW    = C * E;                        // one spatial element (all channels)
    localparam integer NP    = HP * WP;                      // elements in the padded map
    localparam integer JUMP  = STRIDE * WP - (OUT_W - 1) * STRIDE;  // row-end shift (elements)
    localparam integer OW_W  = (OUT_W > 1) ? $clog2(OUT_W) : 1;
    localparam integer OH_W  = (OUT_H > 1) ? $clog2(OUT_H) : 1;

    // Input buffer.
    reg [IN_H*IN_W*EW-1:0] buf_data;
    reg [TAG_W-1:0]        buf_tag;
    reg                    buf_full;

    // Working register (padded map, shifted towards element 0) and position counters.
    reg [NP*EW-1:0]        win;
    reg [TAG_W-1:0]        win_tag;
    reg                    active;
    reg [OW_W-1:0]         ow;
    reg [OH_W-1:0]         oh;

    wire row_end  = (ow == OUT_W[OW_W-1:0] - 1'b1);
    wire last_pos = row_end && (oh == OUT_H[OH_W-1:0] - 1'b1);
    wire m_fire   = active && m_tready;
    wire done     = m_fire && last_pos;                 // last window of the sample leaves
    wire load     = buf_full && (!active || done);      // next map enters `win`
    wire s_fire   = s_tvalid && s_tready;

    assign s_tready = !buf_full || ((P == 1) && load);
    assign m_tvalid = active;
    assign m_tuser  = win_tag;
    assign m_tlast  = last_pos;

    // The padded image of the buffer, and `win` shifted by STRIDE and by JUMP elements.
    wire [NP*EW-1:0] padded;
    wire [NP*EW-1:0] shift_s;
    wire [NP*EW-1:0] shift_j;

    genvar g, kh, kw;
    generate
        for (g = 0; g < NP; g = g + 1) begin : g_pad
            localparam integer R  = g / WP - PADH;   // input row of padded element g
            localparam integer CC = g % WP - PAD;    // input column
            if (R >= 0 && R < IN_H && CC >= 0 && CC < IN_W) begin : g_in
                assign padded[g*EW +: EW] = buf_data[(R*IN_W + CC)*EW +: EW];
            end else begin : g_zero
                assign padded[g*EW +: EW] = {EW{1'b0}};
            end
        end
        if (STRIDE < NP) begin : g_shift
            assign shift_s = {{(STRIDE*EW){1'b0}}, win[NP*EW-1:STRIDE*EW]};
        end else begin : g_noshift
            assign shift_s = {NP*EW{1'b0}};  // P = 1 with a stride beyond the map: never used
        end
        if (OUT_H > 1 && JUMP < NP) begin : g_jump
            assign shift_j = {{(JUMP*EW){1'b0}}, win[NP*EW-1:JUMP*EW]};
        end else begin : g_nojump
            // 1-D (or a single output row): the last window of a sample is never followed by a
            // shift that matters, so the row jump is not needed.
            assign shift_j = shift_s;
        end
        for (kh = 0; kh < KH; kh = kh + 1) begin : g_tap_h
            for (kw = 0; kw < K; kw = kw + 1) begin : g_tap_w
                assign m_tdata[(kh*K + kw)*EW +: EW] = win[(kh*WP + kw)*EW +: EW];
            end
        end
    endgenerate

    always @(posedge clk) begin
        if (s_fire) begin
            buf_data <= s_tdata;
            buf_tag  <= s_tuser;
        end
        if (load) begin
            win     <= padded;
            win_tag <= buf_tag;
        end else if (m_fire) begin
            win <= row_end ? shift_j : shift_s;
        end
    end

    always @(posedge clk) begin
        if (rst) begin
            buf_full <= 1'b0;
            active   <= 1'b0;
            ow       <= {OW_W{1'b0}};
            oh       <= {OH_W{1'b0}};
        end else begin
            if (s_fire)
                buf_full <= 1'b1;
            else if (load)
                buf_full <= 1'b0;
            if (load)
                active <= 1'b1;
            else if (done)
                active <= 1'b0;
            if (m_fire) begin
                ow <= row_end ? {OW_W{1'b0}} : ow + 1'b1;
                if (row_end)
                    oh <= last_pos ? {OH_W{1'b0}} : oh + 1'b1;
            end
        end
    end
endmodule

`default_nettype wire
