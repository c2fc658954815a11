// sliding_window: pixel stream in -> receptive-field stream out (the im2col of a convolution,
// eehw.golden.Conv with zero padding, 1-D or 2-D, square kernel), with a line buffer as FINN's
// ConvolutionInputGenerator: nothing holds the whole map.
//
// Stream format (see the streaming contract):
//   input:  pixel stream, one beat per input position p = h*IN_W + w (row-major), IN_H*IN_W beats
//           per sample, channel c at s_tdata[c*E +: E]; s_tlast on the last beat (not needed: the
//           module counts positions); s_tuser = the sample's tag (the same on every beat).
//   output: for each output position q = oh*OUT_W + ow (row-major over OUT_H x OUT_W) the
//           receptive field of KK*C elements, element (kh*K + kw)*C + c (1-D: kw*C + c) = the
//           input at row oh*STRIDE - PAD + kh, column ow*STRIDE - PAD + kw, channel c, or 0 in
//           the padding; sent as NB = KK*C/SIMD beats, beat j = elements j*SIMD .. j*SIMD+SIMD-1
//           (element j*SIMD + i at m_tdata[i*E +: E]); m_tlast on the last beat of the last
//           position; m_tuser = the sample's tag on every beat.
//   KH = K (2-D) or 1 (1-D), KK = KH*K, HP = IN_H + 2*PAD (1-D: 1), WP = IN_W + 2*PAD,
//   OUT_W = (WP - K)/STRIDE + 1, OUT_H = (HP - KH)/STRIDE + 1, P = OUT_H*OUT_W windows per sample.
//
// Implementation. A scan walks the padded HP x WP map in raster order, one step per cycle at
// most: step s = r*WP + x takes the next input beat if (r, x) is inside the map, else a zero
// pixel (no beat). The step shifts the column {line buffer[x] (rows r-KH+1 .. r-1), new pixel}
// into the K x K window registers (K x K x C x E flip-flops) and writes the line buffer word x
// back with the oldest row dropped and the new pixel added. The line buffer is ONE memory of WP
// words x (KH-1)*C*E bits (2-D with K >= 2 only; none in 1-D or for K = 1), synchronous read
// with enable (read word x+1 while writing word x), style RAM_STYLE:
//   "block" (RAMB18E1/RAMB36E1), "distributed" (RAM32M / RAM64X1D), "registers" (flip-flops),
//   "auto" = block if WP*(KH-1)*C*E >= 1024 bits and WP > 64 words, else distributed.
// The step at a window position W_j (r = KH-1 + oh*STRIDE, x = K-1 + ow*STRIDE) completes
// window j. NB = 1: the window registers are the output register (m_tdata = window), the scan
// waits only while a window is held unaccepted. NB > 1: the completed window is copied into an
// output register (KK*C*E flip-flops) whose beat-th SIMD slice is sent per beat; the scan waits at
// the next window position until the last beat of the previous window leaves.
// The first step of a sample (r = x = 0) waits for the sample's first input beat (it takes the
// tag from it; the beat itself is only consumed if (0, 0) is inside the map). The scan runs from
// one sample straight into the next: the next sample's rows enter the line buffer while the
// previous sample's last windows leave.
// Input: a one-beat skid register (pass-through when empty), s_tready = !skid_full: a register,
// no combinational path from m_tready.
//
// Timing (exact, data independent). Window steps W_0 < ... < W_{P-1}, W_0 = (KH-1)*WP + K-1,
// W_{P-1} = (KH-1 + (OUT_H-1)*STRIDE)*WP + K-1 + (OUT_W-1)*STRIDE; gaps d_j = W_{j+1} - W_j and,
// across samples, d_{P-1} = HP*WP - W_{P-1} + W_0: STRIDE within a row, STRIDE*WP -
// (OUT_W-1)*STRIDE from row to row. Output always ready, idle module, input beats offered back
// to back; t0 = the edge that transfers the sample's first input beat:
//   step s happens at edge T(s) = t0 + s for s <= W_0; window j is loaded (window / output
//   register) at edge L_j = T(W_j), L_0 = t0 + W_0, L_{j+1} = L_j + max(NB, d_j), and the steps
//   between two windows follow one per cycle: T(s) = L_j + (s - W_j) for W_j <= s < W_{j+1}.
//   Window j's beats transfer at edges L_j + 1 .. L_j + NB.
//   Input beat i (in-map pixel i, at step s_i) transfers at edge T(s_{i-1}) + 1 (i >= 1; the skid
//   takes one beat ahead), and is consumed at edge T(s_i).
//   FIRST-BEAT LATENCY = W_0 + 1 cycles (first input edge -> first output edge).
//   LAST-BEAT LATENCY  = L_{P-1} + NB - T(s_{N-2}) - 1 cycles, N = IN_H*IN_W input beats,
//     s_{N-2} the step of the last-but-one input pixel (N = 1: L_{P-1} + NB - t0). When the
//     output never throttles the scan (NB <= every d_j, always true for NB = 1) T(s) = t0 + s
//     and this is W_{P-1} + NB - s_{N-2} - 1. It can be <= 0 when floor mode drops trailing
//     input rows/columns after the last window (the last window leaves before the input ends).
//     Example 28x28, K=3, PAD=1, NB=1: first 63, last 32, 900 cycles per sample.
//   CYCLES PER SAMPLE (samples back to back) = sum over the P gaps of max(NB, d_j)
//     = OUT_H*(OUT_W-1)*max(NB, STRIDE) + (OUT_H-1)*max(NB, STRIDE*WP - (OUT_W-1)*STRIDE)
//       + max(NB, HP*WP - (OUT_H-1)*STRIDE*WP - (OUT_W-1)*STRIDE)
//     = HP*WP (the padded positions) when NB <= all gaps (e.g. NB = 1); always >= P*NB (the
//     output beats) and <= HP*WP + P*(NB-1). The input (N <= HP*WP beats) never limits it.
//   With gaps or backpressure the same order of events holds, later.
//
// Resources (Yosys 0.23 synth_xilinx -family xc7 -flatten, TAG_W = 8, 2-D, K = 3, PAD = 1,
// E = 4; `python rtl_sim/tests/test_conv_blocks.py` prints this table):
//   map        C   SIMD  NB  RAM_STYLE  LUT   FF   BRAM18  LUTRAM  memory cells
//   28x28      8    72    1  auto       162   421    0       44    11 RAM32M
//   28x28      8    72    1  block      121   357    2        0    1 RAMB36E1
//   28x28      8    24    3  auto       263   615    0       44    11 RAM32M
//   28x28      8     8    9  auto       276   617    0       44    11 RAM32M
//   28x28     16   144    1  auto       270   805    0       88    22 RAM32M
//   14x14      8    72    1  auto       149   419    0       44    11 RAM32M
//    7x7      16   144    1  auto       254   803    0       88    22 RAM32M
//    7x7      16     2   72  auto       513  1194    0       88    22 RAM32M
//   1-D 20    16    80    1  (K = 5)    158   416    0        0    - (no line buffer in 1-D)
//   1-D 20    16    10    8  (K = 5)    287   675    0        0    -
// The line buffer (2 x 30 x 8 x 4 = 1,920 bits at 28x28x8) is LUTRAM or block RAM; the
// flip-flops are the K x K window (KK*C*E = 288), the skid register and the read register. The
// cost grows with the window (C), not with SIMD: NB > 1 adds the output register (KK*C*E FF
// with a load enable) and the NB:1 slice multiplexer (SIMD*E bits wide), so the fixed part
// stays small down to SIMD = 1.
// Parameter constraints: DIMS 1 or 2 (1-D: IN_H = 1); WP >= K; HP >= KH; SIMD divides KK*C.
`default_nettype none

module sliding_window #(
    parameter integer DIMS   = 2,   // 1 (length IN_W, IN_H must be 1) or 2 (IN_H x IN_W)
    parameter integer C      = 1,   // channels
    parameter integer IN_H   = 8,   // input height (1 for 1-D)
    parameter integer IN_W   = 8,   // input width (the length for 1-D)
    parameter integer K      = 3,   // kernel size (K x K for 2-D, K along w for 1-D)
    parameter integer STRIDE = 1,
    parameter integer PAD    = 1,   // zero padding on each side of each spatial dimension
    parameter integer E      = 8,   // element width
    parameter integer SIMD   = 9,   // output elements per beat, divides KK*C
    parameter         RAM_STYLE = "auto",  // line buffer: "auto", "block", "distributed", "registers"
    parameter integer TAG_W  = 8    // tuser (sample tag) width
) (
    input  wire                 clk,
    input  wire                 rst,       // synchronous, active high

    input  wire [C*E-1:0]       s_tdata,
    input  wire                 s_tvalid,
    output wire                 s_tready,
    input  wire [TAG_W-1:0]     s_tuser,
    /* verilator lint_off UNUSEDSIGNAL */  // positions are counted; tlast is not needed
    input  wire                 s_tlast,
    /* verilator lint_on UNUSEDSIGNAL */

    output wire [SIMD*E-1:0]    m_tdata,
    output wire                 m_tvalid,
    input  wire                 m_tready,
    output wire [TAG_W-1:0]     m_tuser,
    output wire                 m_tlast
);
    localparam integer KH    = (DIMS == 2) ? K : 1;
    localparam integer KK    = KH * K;
    localparam integer HP    = (DIMS == 2) ? IN_H + 2 * PAD : 1;
    localparam integer WP    = IN_W + 2 * PAD;
    localparam integer PADH  = (DIMS == 2) ? PAD : 0;
    localparam integer OUT_W = (WP - K) / STRIDE + 1;
    localparam integer OUT_H = (HP - KH) / STRIDE + 1;
    localparam integer CE    = C * E;                 // one pixel
    localparam integer WINW  = KK * CE;               // one window
    localparam integer NB    = KK * C / SIMD;         // beats per window
    localparam integer XLAST = K - 1 + (OUT_W - 1) * STRIDE;   // column of the last window
    localparam integer RLAST = KH - 1 + (OUT_H - 1) * STRIDE;  // row of the last window
    localparam integer XW    = (WP > 1) ? $clog2(WP) : 1;
    localparam integer RW    = (HP > 1) ? $clog2(HP) : 1;
    localparam integer PHW   = (STRIDE > 1) ? $clog2(STRIDE) : 1;
    localparam integer BW    = (NB > 1) ? $clog2(NB) : 1;
    localparam integer LBR   = KH - 1;                // line buffer rows
    localparam integer LBW   = (LBR > 0) ? LBR * CE : 1;
    localparam integer LB_BITS = WP * LBR * CE;
    // 0 = distributed, 1 = block, 2 = registers
    /* verilator lint_off WIDTHEXPAND */
    localparam integer STYLE = (RAM_STYLE == "block") ? 1 : (RAM_STYLE == "registers") ? 2 :
                               (RAM_STYLE == "distributed") ? 0 :
                               (LB_BITS >= 1024 && WP > 64) ? 1 : 0;
    /* verilator lint_on WIDTHEXPAND */

    generate
        if (!(DIMS == 1 || DIMS == 2) || (DIMS == 1 && IN_H != 1) || WP < K || HP < KH
            || (KK * C) % SIMD != 0 || STRIDE < 1 || K < 1) begin : g_bad_params
            sliding_window_bad_parameters u_error ();
        end
    endgenerate

    // ---------------------------------------------------------------- input skid register
    reg              skid_v;
    reg [CE-1:0]     skid_d;
    reg [TAG_W-1:0]  skid_t;
    wire             in_valid = skid_v || s_tvalid;
    wire [CE-1:0]    in_data  = skid_v ? skid_d : s_tdata;
    wire [TAG_W-1:0] in_tag   = skid_v ? skid_t : s_tuser;
    wire             pop;       // the scan consumes the input beat this cycle

    assign s_tready = !skid_v;

    always @(posedge clk) begin
        if (!skid_v) begin
            skid_d <= s_tdata;
            skid_t <= s_tuser;
        end
        if (rst)
            skid_v <= 1'b0;
        else if (skid_v)
            skid_v <= !pop;
        else
            skid_v <= s_tvalid && !pop;
    end

    // ---------------------------------------------------------------- scan position
    reg [XW-1:0]  x;
    reg [RW-1:0]  r;
    reg [PHW-1:0] xph;    // (x - (K-1)) mod STRIDE
    reg [PHW-1:0] rph;    // (r - (KH-1)) mod STRIDE
    reg [TAG_W-1:0] tag_q;

    wire signed [31:0] xs = $signed({{(32 - XW){1'b0}}, x});
    wire signed [31:0] rs = $signed({{(32 - RW){1'b0}}, r});
    wire x_end   = (xs == WP - 1);
    wire r_end   = (rs == HP - 1);
    wire [XW-1:0] x_next = x_end ? {XW{1'b0}} : x + 1'b1;
    wire [RW-1:0] r_next = r_end ? {RW{1'b0}} : r + 1'b1;
    wire signed [31:0] xns = $signed({{(32 - XW){1'b0}}, x_next});
    wire signed [31:0] rns = $signed({{(32 - RW){1'b0}}, r_next});
    wire first   = (x == {XW{1'b0}}) && (r == {RW{1'b0}});
    wire need    = (xs >= PAD) && (xs < PAD + IN_W) && (rs >= PADH) && (rs < PADH + IN_H);
    wire at_win  = (xs >= K - 1) && (xs <= XLAST) && (xph == {PHW{1'b0}})
                && (rs >= KH - 1) && (rs <= RLAST) && (rph == {PHW{1'b0}});
    wire at_last = (xs == XLAST) && (rs == RLAST);
    wire step_ok = in_valid || (!need && !first);
    wire advance;
    wire [TAG_W-1:0] cur_tag = first ? in_tag : tag_q;
    wire [CE-1:0]    px = need ? in_data : {CE{1'b0}};

    assign pop = advance && need;

    function [PHW-1:0] ph_inc;
        input [PHW-1:0] p;
        begin
            ph_inc = ({{(32 - PHW){1'b0}}, p} == STRIDE - 1) ? {PHW{1'b0}} : p + 1'b1;
        end
    endfunction

    always @(posedge clk) begin
        if (rst) begin
            x   <= {XW{1'b0}};
            r   <= {RW{1'b0}};
            xph <= {PHW{1'b0}};
            rph <= {PHW{1'b0}};
        end else if (advance) begin
            x   <= x_next;
            xph <= (xns == K - 1) ? {PHW{1'b0}} : ph_inc(xph);
            if (x_end) begin
                r   <= r_next;
                rph <= (rns == KH - 1) ? {PHW{1'b0}} : ph_inc(rph);
            end
        end
        if (advance && first)
            tag_q <= in_tag;
    end

    // ---------------------------------------------------------------- line buffer
    wire [KH*CE-1:0] col;  // the column shifted into the window, row kh at [kh*CE +: CE]

    generate
        if (LBR > 0) begin : g_lb
            wire [LBW-1:0] lb_q;   // rows r-KH+1 .. r-1 of column x (slot 0 = oldest)
            wire [LBW-1:0] lb_wd;
            if (LBR > 1) begin : g_wd
                assign lb_wd = {px, lb_q[LBW-1:CE]};
            end else begin : g_wd1
                assign lb_wd = px;
            end
            if (STYLE == 1) begin : g_block
                (* ram_style = "block" *) reg [LBW-1:0] mem [0:WP-1];
                reg [LBW-1:0] q;
                always @(posedge clk) begin
                    if (advance) begin
                        mem[x] <= lb_wd;
                        q <= mem[x_next];
                    end
                end
                assign lb_q = q;
            end else if (STYLE == 2) begin : g_regs
                (* ram_style = "registers" *) reg [LBW-1:0] mem [0:WP-1];
                reg [LBW-1:0] q;
                always @(posedge clk) begin
                    if (advance) begin
                        mem[x] <= lb_wd;
                        q <= mem[x_next];
                    end
                end
                assign lb_q = q;
            end else begin : g_dist
                (* ram_style = "distributed" *) reg [LBW-1:0] mem [0:WP-1];
                reg [LBW-1:0] q;
                always @(posedge clk) begin
                    if (advance) begin
                        mem[x] <= lb_wd;
                        q <= mem[x_next];
                    end
                end
                assign lb_q = q;
            end
            assign col = {px, lb_q};
        end else begin : g_nolb
            assign col = px;
        end
    endgenerate

    // ---------------------------------------------------------------- window registers
    // NB > 1 reads only columns 1..K-1 of it (the output register takes win_next), so synthesis
    // drops column 0.
    /* verilator lint_off UNUSEDSIGNAL */
    reg  [WINW-1:0] win;   // pixel (kh, kw) at [(kh*K + kw)*CE +: CE]
    /* verilator lint_on UNUSEDSIGNAL */
    wire [WINW-1:0] win_next;

    genvar gh, gw;
    generate
        for (gh = 0; gh < KH; gh = gh + 1) begin : g_wh
            for (gw = 0; gw < K; gw = gw + 1) begin : g_ww
                if (gw == K - 1) begin : g_new
                    assign win_next[(gh*K + gw)*CE +: CE] = col[gh*CE +: CE];
                end else begin : g_shift
                    assign win_next[(gh*K + gw)*CE +: CE] = win[(gh*K + gw + 1)*CE +: CE];
                end
            end
        end
    endgenerate

    always @(posedge clk) begin
        if (advance)
            win <= win_next;
    end

    // ---------------------------------------------------------------- output
    generate
        if (NB == 1) begin : g_out1
            // The window registers are the output register.
            reg             win_v;
            reg             win_last;
            reg [TAG_W-1:0] win_tag;
            assign advance  = step_ok && (!win_v || m_tready);
            assign m_tdata  = win;
            assign m_tvalid = win_v;
            assign m_tuser  = win_tag;
            assign m_tlast  = win_last;
            always @(posedge clk) begin
                if (advance) begin
                    win_last <= at_last;
                    win_tag  <= cur_tag;
                end
                if (rst)
                    win_v <= 1'b0;
                else if (advance)
                    win_v <= at_win;
                else if (m_tready)
                    win_v <= 1'b0;
            end
        end else begin : g_outn
            // A completed window is copied into an output register (flip-flops with a load
            // enable, no LUT) and beat j sends its slice j through an NB:1 multiplexer. A shift
            // register instead (load or shift per bit) measured 2,405 LUT at C = 16, SIMD = 2
            // (Yosys builds wide mux trees for it) against 437 for the multiplexer. The slices
            // are an array indexed by the beat: a part-select out_q[beat*SIMD*E +: SIMD*E]
            // becomes a barrel shifter when SIMD*E is not a power of two (1-D, C = 16, K = 5,
            // SIMD = 10: 707 LUT against 303).
            reg [WINW-1:0]  out_q;
            reg             out_v;
            reg             out_last;
            reg [TAG_W-1:0] out_tag;
            reg [BW-1:0]    beat;
            wire beat_last = ({{(32 - BW){1'b0}}, beat} == NB - 1);
            wire out_free  = !out_v || (m_tready && beat_last);
            wire load      = advance && at_win;
            assign advance  = step_ok && (!at_win || out_free);
            wire [SIMD*E-1:0] slice [0:NB-1];
            genvar gb;
            for (gb = 0; gb < NB; gb = gb + 1) begin : g_slice
                assign slice[gb] = out_q[gb*SIMD*E +: SIMD*E];
            end
            assign m_tdata  = slice[beat];
            assign m_tvalid = out_v;
            assign m_tuser  = out_tag;
            assign m_tlast  = out_last && beat_last;
            always @(posedge clk) begin
                if (load) begin
                    out_q    <= win_next;
                    out_last <= at_last;
                    out_tag  <= cur_tag;
                end
                if (rst) begin
                    out_v <= 1'b0;
                    beat  <= {BW{1'b0}};
                end else if (load) begin
                    out_v <= 1'b1;
                    beat  <= {BW{1'b0}};
                end else if (out_v && m_tready) begin
                    out_v <= !beat_last;
                    beat  <= beat_last ? {BW{1'b0}} : beat + 1'b1;
                end
            end
        end
    endgenerate
endmodule

`default_nettype wire
