// maxpool: streaming max pooling (eehw.golden.MaxPool), window = stride = K, floor mode:
// trailing rows/columns that do not fill a window are dropped (still consumed), 1-D or 2-D.
//
// Stream format (see the streaming contract):
//   input:  pixel stream of the IN_H x IN_W map (1-D: IN_H = 1), FOLD beats per position
//           p = h*IN_W + w (row-major); beat f of a pixel holds channels f*CB .. f*CB+CB-1,
//           CB = C/FOLD, channel f*CB + c at s_tdata[c*E +: E]; s_tlast on the last beat (not
//           needed: the module counts beats); s_tuser = the sample's tag.
//   output: pixel stream of the OUT_H x OUT_W pooled map in the same FOLD beats a pixel,
//           OUT_W = IN_W / K,
//           OUT_H = IN_H / K (1-D: 1), y(oh, ow, c) = max over kh < KH, kw < K of
//           x(oh*K + kh, ow*K + kw, c) (KH = K for 2-D, 1 for 1-D), compared as SIGNED or unsigned
//           E-bit integers; m_tlast on the last output pixel; m_tuser = the tag on every beat.
//
// Implementation: one input beat per cycle. A register keeps the running maximum over the
// pixels of the current window in the current row; at the window's last column kw = K-1 it is
// combined with the row memory's partial maximum of that window column ow (rows above in the
// same window row), and written back (kh < KH-1) or sent (kh = KH-1). The row memory (2-D with
// K >= 2 only) holds OUT_W words of C*E bits, synchronous read with enable (word ow is read when
// the window's first column arrives, written at its last column), style RAM_STYLE:
//   "block" (RAMB18E1), "distributed" (RAM32M / RAM64X1D), "registers" (flip-flops),
//   "auto" = block if OUT_W*C*E >= 1024 bits and OUT_W > 64 words, else distributed.
// FOLD > 1 (channel-folded, CB comparators instead of C): the running maximum is a FOLD-word
// LUTRAM indexed by the beat's fold, and the row memory holds OUT_W*FOLD words of CB*E bits
// (word ow*FOLD + fold), read asynchronously at the window's last column: "distributed" or
// "registers" ("block" is an elaboration error; "auto" gives distributed).
// Input: a one-beat skid register (pass-through when empty), s_tready = !skid_full (a register,
// no combinational path from m_tready); output: one register (m_tvalid never depends on m_tready).
//
// Timing (exact, data independent), output always ready, idle module, input beats back to back,
// t0 = the edge that transfers the first input beat: input beat b = i*FOLD + f (pixel i, fold
// f) transfers and is consumed at edge t0 + b (one per cycle); output pixel j's fold f,
// completed by input pixel i_j = (oh*K + KH-1)*IN_W + ow*K + K-1, transfers at edge
// t0 + i_j*FOLD + f + 1.
//   FIRST-BEAT LATENCY = ((KH-1)*IN_W + K-1)*FOLD + 1 cycles (first input edge -> first output edge)
//   LAST-BEAT LATENCY  = i_L - N + 2, i_L = ((OUT_H*KH - 1)*IN_W + OUT_W*K - 1)*FOLD + FOLD-1,
//     N = IN_H*IN_W*FOLD (= 1 when no row/column is dropped; smaller, possibly <= 0, when floor
//     mode drops trailing input after the last window: the last output can leave before the
//     last input)
//   CYCLES PER SAMPLE  = IN_H*IN_W*FOLD (samples back to back; the input side moves every cycle)
//
// Resources (Yosys 0.23 synth_xilinx -family xc7 -flatten, TAG_W = 8, 2-D 28x28, K = 2, E = 4,
// SIGNED = 1; `python rtl_sim/tests/test_conv_blocks.py` prints this table):
//   C   RAM_STYLE  LUT   FF   BRAM18  LUTRAM  memory cells
//   4   auto       140    99    0        8    2 RAM32M
//   8   auto       239   163    0       16    4 RAM32M
//   16  auto       439   291    0       32    8 RAM32M
//   8   block      220   131    1        0    1 RAMB18E1
// LUTs scale with the channels (the lanes: about 25 LUT per 4-bit channel, two comparators and
// muxes); the fixed part (counters, control) is about 40 LUT / 35 FF.
// Channel-folded, same synthesis, TAG_W = 16, K = 2, E = 4, SIGNED = 1, auto:
//   map          C   FOLD  lanes  LUT   FF
//   1-D x 10     32    1    32    480  427
//   1-D x 10     32    4     8    174  111   (mnist1d_cnn's pool head after block 2)
//   1-D x 20     16    1    16    258  237
//   1-D x 20     16    2     8    174  111
//   2-D 28x28     8    1     8    244  179
//   2-D 28x28     8    2     4    167   85
//   2-D 14x14    16    1    16    441  304
//   2-D 14x14    16    4     4    168   84
// Parameter constraints: DIMS 1 or 2 (1-D: IN_H = 1); 1 <= K <= IN_W (2-D: K <= IN_H); FOLD
// divides C.
`default_nettype none

module maxpool #(
    parameter integer DIMS   = 2,   // 1 (length IN_W, IN_H must be 1) or 2 (IN_H x IN_W)
    parameter integer C      = 8,   // channels
    parameter integer IN_H   = 8,   // input height (1 for 1-D)
    parameter integer IN_W   = 8,   // input width (the length for 1-D)
    parameter integer K      = 2,   // window and stride
    parameter integer E      = 8,   // element width
    parameter integer SIGNED = 0,   // elements signed (1) or unsigned (0)
    parameter integer FOLD   = 1,   // beats per pixel: C/FOLD channels a beat (FOLD divides C)
    parameter         RAM_STYLE = "auto",  // row memory: "auto", "block", "distributed", "registers"
    parameter integer TAG_W  = 8    // tuser (sample tag) width
) (
    input  wire                 clk,
    input  wire                 rst,       // synchronous, active high

    input  wire [C*E/FOLD-1:0]  s_tdata,
    input  wire                 s_tvalid,
    output wire                 s_tready,
    input  wire [TAG_W-1:0]     s_tuser,
    /* verilator lint_off UNUSEDSIGNAL */  // positions are counted; tlast is not needed
    input  wire                 s_tlast,
    /* verilator lint_on UNUSEDSIGNAL */

    output wire [C*E/FOLD-1:0]  m_tdata,
    output wire                 m_tvalid,
    input  wire                 m_tready,
    output wire [TAG_W-1:0]     m_tuser,
    output wire                 m_tlast
);
    localparam integer KH    = (DIMS == 2) ? K : 1;
    localparam integer OUT_W = IN_W / K;
    localparam integer OUT_H = (DIMS == 2) ? IN_H / K : 1;
    localparam integer CE    = C / FOLD * E;    // bits of one beat (CB channels)
    localparam integer CB    = C / FOLD;
    localparam integer FW    = (FOLD > 1) ? $clog2(FOLD) : 1;
    localparam integer WW    = (IN_W > 1) ? $clog2(IN_W) : 1;
    localparam integer HW    = (IN_H > 1) ? $clog2(IN_H) : 1;
    localparam integer KW_W  = (K > 1) ? $clog2(K) : 1;
    localparam integer OWW   = $clog2(OUT_W + 1);
    localparam integer MD    = (OUT_W * FOLD > 1) ? OUT_W * FOLD : 2;    // row memory depth (words of CB channels)
    localparam integer AW    = $clog2(MD);
    localparam integer MEM_BITS = MD * CE;
    /* verilator lint_off WIDTHEXPAND */
    localparam integer STYLE = (RAM_STYLE == "block") ? 1 : (RAM_STYLE == "registers") ? 2 :
                               (RAM_STYLE == "distributed") ? 0 :
                               (MEM_BITS >= 1024 && OUT_W > 64) ? 1 : 0;
    localparam integer FOLD_BLOCK = (FOLD > 1 && KH > 1 && RAM_STYLE == "block") ? 1 : 0;
    /* verilator lint_on WIDTHEXPAND */

    generate
        if (!(DIMS == 1 || DIMS == 2) || (DIMS == 1 && IN_H != 1) || K < 1 || OUT_W < 1 || OUT_H < 1
            || FOLD < 1 || C % FOLD != 0 || FOLD_BLOCK != 0) begin : g_bad_params
            maxpool_bad_parameters u_error ();
        end
    endgenerate

    // ---------------------------------------------------------------- input skid register
    reg              skid_v;
    reg [CE-1:0]     skid_d;
    reg [TAG_W-1:0]  skid_t;
    wire             in_valid = skid_v || s_tvalid;
    wire [CE-1:0]    px       = skid_v ? skid_d : s_tdata;
    wire [TAG_W-1:0] in_tag   = skid_v ? skid_t : s_tuser;
    wire             adv;       // the input pixel is consumed this cycle

    assign s_tready = !skid_v;

    always @(posedge clk) begin
        if (!skid_v) begin
            skid_d <= s_tdata;
            skid_t <= s_tuser;
        end
        if (rst)
            skid_v <= 1'b0;
        else if (skid_v)
            skid_v <= !adv;
        else
            skid_v <= s_tvalid && !adv;
    end

    // ---------------------------------------------------------------- position
    // fo = the beat's fold (channels fo*CB ..); the pixel position moves on its last fold.
    reg [FW-1:0]   fo;
    wire           last_fold = (FOLD == 1) || ($signed({{(32 - FW){1'b0}}, fo}) == FOLD - 1);
    wire           adv_px    = adv && last_fold;
    reg [WW-1:0]   w;
    reg [HW-1:0]   h;
    reg [KW_W-1:0] kw;
    reg [KW_W-1:0] kh;
    reg [OWW-1:0]  ow;

    wire signed [31:0] ws  = $signed({{(32 - WW){1'b0}}, w});
    wire signed [31:0] hs  = $signed({{(32 - HW){1'b0}}, h});
    wire signed [31:0] kws = $signed({{(32 - KW_W){1'b0}}, kw});
    wire signed [31:0] khs = $signed({{(32 - KW_W){1'b0}}, kh});
    wire signed [31:0] ows = $signed({{(32 - OWW){1'b0}}, ow});
    wire w_end   = (ws == IN_W - 1);
    wire h_end   = (hs == IN_H - 1);
    wire kw_end  = (kws == K - 1);
    wire kh_end  = (khs == KH - 1);
    wire in_win  = (ws < OUT_W * K) && (hs < OUT_H * KH);
    wire win_end = in_win && kw_end;           // the pixel completes a window's row part
    wire emit    = win_end && kh_end;          // ... and the window
    wire at_last = emit && (ows == OUT_W - 1) && (hs == OUT_H * KH - 1) && last_fold;

    always @(posedge clk) begin
        if (rst || FOLD == 1)
            fo <= {FW{1'b0}};
        else if (adv)
            fo <= last_fold ? {FW{1'b0}} : fo + 1'b1;
    end

    always @(posedge clk) begin
        if (rst) begin
            w  <= {WW{1'b0}};
            h  <= {HW{1'b0}};
            kw <= {KW_W{1'b0}};
            kh <= {KW_W{1'b0}};
            ow <= {OWW{1'b0}};
        end else if (adv_px) begin
            w  <= w_end ? {WW{1'b0}} : w + 1'b1;
            kw <= (w_end || kw_end) ? {KW_W{1'b0}} : kw + 1'b1;
            ow <= w_end ? {OWW{1'b0}} : (win_end ? ow + 1'b1 : ow);
            if (w_end) begin
                h  <= h_end ? {HW{1'b0}} : h + 1'b1;
                kh <= (h_end || kh_end) ? {KW_W{1'b0}} : kh + 1'b1;
            end
        end
    end

    // ---------------------------------------------------------------- maxima
    // a > b as SIGNED or unsigned E-bit integers (one extension bit).
    function gt;
        input [E-1:0] a;
        input [E-1:0] b;
        begin
            gt = $signed({(SIGNED != 0) & a[E-1], a}) > $signed({(SIGNED != 0) & b[E-1], b});
        end
    endfunction

    wire [CE-1:0] racc;       // running maximum over the window's pixels in this row (this fold)
    wire [CE-1:0] hm;         // ... including this pixel
    wire [CE-1:0] part;       // partial maximum of the rows above (2-D), read from the row memory
    wire [CE-1:0] v;          // the window's maximum so far, including this pixel's row
    wire          first_col = (kws == 0);
    wire          first_row = (khs == 0);

    genvar gc;
    generate
        for (gc = 0; gc < CB; gc = gc + 1) begin : g_max
            wire [E-1:0] xi = px[gc*E +: E];
            wire [E-1:0] ri = racc[gc*E +: E];
            wire [E-1:0] hi = (first_col || gt(xi, ri)) ? xi : ri;
            wire [E-1:0] pi = part[gc*E +: E];
            assign hm[gc*E +: E] = hi;
            assign v[gc*E +: E]  = (first_row || gt(hi, pi)) ? hi : pi;
        end
    endgenerate

    // One running maximum per fold: a register (FOLD = 1) or a FOLD-word LUTRAM read
    // asynchronously at fo and written back at fo.
    generate
        if (FOLD == 1) begin : g_racc_reg
            reg [CE-1:0] racc_q;
            always @(posedge clk) begin
                if (adv)
                    racc_q <= hm;
            end
            assign racc = racc_q;
        end else begin : g_racc_mem
            (* ram_style = "distributed" *) reg [CE-1:0] racc_mem [0:FOLD-1];
            always @(posedge clk) begin
                if (adv)
                    racc_mem[fo] <= hm;
            end
            assign racc = racc_mem[fo];
        end
    endgenerate

    // ---------------------------------------------------------------- row memory
    generate
        if (KH > 1 && FOLD > 1) begin : g_mem_folded
            // Word ow*FOLD + fo, read asynchronously at the window's last column (where v
            // needs it) and written back in the same cycle: FOLD partials per window column
            // cannot wait in one read register as they do below.
            /* verilator lint_off UNUSEDSIGNAL */
            wire [31:0]   addr_w = ows * FOLD + $signed({{(32 - FW){1'b0}}, fo});
            /* verilator lint_on UNUSEDSIGNAL */
            wire [AW-1:0] addr   = addr_w[AW-1:0];
            wire we = adv && win_end && !kh_end;
            if (STYLE == 2) begin : g_regs
                (* ram_style = "registers" *) reg [CE-1:0] mem [0:MD-1];
                always @(posedge clk) begin
                    if (we)
                        mem[addr] <= v;
                end
                assign part = mem[addr];
            end else begin : g_dist
                (* ram_style = "distributed" *) reg [CE-1:0] mem [0:MD-1];
                always @(posedge clk) begin
                    if (we)
                        mem[addr] <= v;
                end
                assign part = mem[addr];
            end
        end else if (KH > 1) begin : g_mem
            wire [AW-1:0] addr = ow[AW-1:0];
            wire re = adv && in_win && first_col;       // read the partial of window column ow
            wire we = adv && win_end && !kh_end;        // write it back
            if (STYLE == 1) begin : g_block
                (* ram_style = "block" *) reg [CE-1:0] mem [0:MD-1];
                reg [CE-1:0] q;
                always @(posedge clk) begin
                    if (we)
                        mem[addr] <= v;
                    if (re)
                        q <= mem[addr];
                end
                assign part = q;
            end else if (STYLE == 2) begin : g_regs
                (* ram_style = "registers" *) reg [CE-1:0] mem [0:MD-1];
                reg [CE-1:0] q;
                always @(posedge clk) begin
                    if (we)
                        mem[addr] <= v;
                    if (re)
                        q <= mem[addr];
                end
                assign part = q;
            end else begin : g_dist
                (* ram_style = "distributed" *) reg [CE-1:0] mem [0:MD-1];
                reg [CE-1:0] q;
                always @(posedge clk) begin
                    if (we)
                        mem[addr] <= v;
                    if (re)
                        q <= mem[addr];
                end
                assign part = q;
            end
        end else begin : g_nomem
            assign part = {CE{1'b0}};   // 1-D or K = 1: every window is one row (first_row)
        end
    endgenerate

    // ---------------------------------------------------------------- output
    reg [CE-1:0]    out_d;
    reg             out_v;
    reg             out_last;
    reg [TAG_W-1:0] out_tag;

    assign adv      = in_valid && (!emit || !out_v || m_tready);
    assign m_tdata  = out_d;
    assign m_tvalid = out_v;
    assign m_tuser  = out_tag;
    assign m_tlast  = out_last;

    always @(posedge clk) begin
        if (adv && emit) begin
            out_d    <= v;
            out_last <= at_last;
            out_tag  <= in_tag;
        end
        if (rst)
            out_v <= 1'b0;
        else if (adv && emit)
            out_v <= 1'b1;
        else if (m_tready)
            out_v <= 1'b0;
    end
endmodule

`default_nettype wire
