// mvu: folded matrix-vector unit with requantised output (eehw.golden.Dense then Quant).
//
//   acc[o] = sum_i W[o][i] * x[i] + b[o]          (exact, ACC_W bits, cannot overflow)
//   y[o]   = clamp(round_half_even(acc[o] * 2^-SHIFT), OUT_MIN, OUT_MAX)
//
// Input beat: IN elements of A_W bits (A_SIGNED), element i at s_tdata[i*A_W +: A_W].
// Output beat: OUT elements of OUT_W bits, element o at m_tdata[o*OUT_W +: OUT_W].
// s_tuser (sample tag) comes out unchanged on m_tuser with its sample's result.
//
// Folding: SF = IN/SIMD input folds, NF = OUT/PE output folds. Each compute cycle multiplies
// SIMD inputs by a PE x SIMD weight tile and accumulates PE sums; the tiles of one sample are
// visited in weight-memory order (f_out outer, f_in inner), so
//
//   II      = SF * NF = (IN/SIMD) * (OUT/PE)   cycles per sample (sustained on back-to-back input)
//   LATENCY = II + 5                            cycles
//
// LATENCY is counted from the clock edge that transfers the input beat (s_tvalid && s_tready)
// to the edge that can transfer its result with m_tready high, when the unit is idle; i.e.
// m_tvalid rises right after edge t + II + 4 for an input taken at edge t. The timing is fixed
// (no data-dependent paths). With back-to-back input and m_tready high, result beats are exactly
// II cycles apart; a sample that arrives while another computes waits in the input buffer and
// starts as soon as the previous one has issued its last tile.
//
// Pipeline (one register each; a global enable freezes all of them only while a finished
// result cannot be written because the output register is still full and not taken):
//   buf    input buffer (second buffer: accepts the next sample while one computes)
//   cur    the sample being computed; rotated by SIMD elements per tile (no wide mux)
//   issue  tile counter -> weight ROM address (synchronous read), x slice, control
//   prod   PE dot products of SIMD terms (+ bias memory read)
//   acc    PE accumulators, bias loaded on the first tile of each output fold
//   out    round_shift_sat per PE lane; output folds 0..NF-2 are collected in res, the last
//          fold writes {y, res} to the output register (held until m_tready)
// s_tready = !buf_full, a register (for II = 1: also true while the buffer is being emptied in
// the same cycle, which is a combinational path from m_tready).
//
// Memories (see eehw/rtl_weights.py): WEIGHT_FILE, (OUT/PE)*(IN/SIMD) words of PE*SIMD*W_W bits,
// word f_out*SF + f_in, lane (p, s) at bits [(p*SIMD + s)*W_W +: W_W] = W[f_out*PE + p][f_in*SIMD + s];
// BIAS_FILE, OUT/PE words of PE*B_W bits, lane p = b[f_out*PE + p]; two's complement, $readmemh.
`default_nettype none

module mvu #(
    parameter integer IN         = 16,   // input vector length
    parameter integer OUT        = 8,    // output vector length
    parameter integer SIMD       = 4,    // input lanes, divides IN
    parameter integer PE         = 2,    // output lanes, divides OUT
    parameter integer A_W        = 4,    // input element width
    parameter integer A_SIGNED   = 0,    // input elements signed (1) or unsigned (0)
    parameter integer W_W        = 4,    // weight width (signed)
    parameter integer B_W        = 8,    // bias width (signed)
    parameter integer SHIFT      = 4,    // requant right shift (round half even); negative = left shift
    parameter integer OUT_W      = 4,    // output element width
    parameter integer OUT_SIGNED = 0,
    parameter integer OUT_MIN    = 0,    // saturation range (ReLU: OUT_MIN = 0)
    parameter integer OUT_MAX    = 15,
    parameter integer TAG_W      = 8,    // tuser (sample tag) width
    parameter         WEIGHT_FILE = "",  // "" = no file (lint / default elaboration only)
    parameter         BIAS_FILE   = ""
) (
    input  wire                 clk,
    input  wire                 rst,       // synchronous, active high

    input  wire [IN*A_W-1:0]    s_tdata,
    input  wire                 s_tvalid,
    output wire                 s_tready,
    input  wire [TAG_W-1:0]     s_tuser,

    output wire [OUT*OUT_W-1:0] m_tdata,
    output wire                 m_tvalid,
    input  wire                 m_tready,
    output wire [TAG_W-1:0]     m_tuser
);
    localparam integer SF      = IN / SIMD;
    localparam integer NF      = OUT / PE;
    localparam integer II      = SF * NF;
    localparam integer DEPTH   = NF * SF;
    localparam integer WORD_W  = PE * SIMD * W_W;
    localparam integer X_W     = A_W + 1;            // input lane read as signed
    localparam integer P_W     = A_W + W_W;          // one product: exact in A_W + W_W signed bits
    localparam integer S_W     = P_W + $clog2(SIMD) + 1;    // sum of SIMD products (+1: no zero-width extension)
    // Accumulator: every product fits A_W + W_W signed bits and IN of them add clog2(IN) bits;
    // one bit more for the bias (or B_W + 1 if the bias is wider), and never narrower than a
    // SIMD partial sum: no sample can overflow it.
    localparam integer SUM_W   = A_W + W_W + $clog2(IN) + 1;
    localparam integer ACC_W0  = (SUM_W > B_W) ? SUM_W : B_W;
    localparam integer ACC_W   = ((ACC_W0 > S_W) ? ACC_W0 : S_W) + 1;
    localparam integer ADDR_W  = (DEPTH > 1) ? $clog2(DEPTH) : 1;
    localparam integer FI_W    = (SF > 1) ? $clog2(SF) : 1;
    localparam integer FO_W    = (NF > 1) ? $clog2(NF) : 1;
    localparam integer LAST_FI = SF - 1;
    localparam integer LAST_FO = NF - 1;
    localparam integer LAST_A  = DEPTH - 1;

    generate
        if (IN % SIMD != 0 || OUT % PE != 0) begin : g_bad_folding
            mvu_SIMD_must_divide_IN_and_PE_must_divide_OUT u_error ();
        end
    endgenerate

    // ---------------------------------------------------------------- memories
    // Read-only, filled by $readmemh. No rom_style/ram_style attribute: Yosys 0.23 synth_xilinx
    // then infers the ROM itself (LUTs for small tiles, block RAM when large).
    /* verilator lint_off UNDRIVEN */
    reg [WORD_W-1:0] wmem [0:DEPTH-1];
    reg [PE*B_W-1:0] bmem [0:NF-1];
    /* verilator lint_on UNDRIVEN */
    generate
        if (WEIGHT_FILE != "") begin : g_wfile
            initial $readmemh(WEIGHT_FILE, wmem);
        end
        if (BIAS_FILE != "") begin : g_bfile
            initial $readmemh(BIAS_FILE, bmem);
        end
    endgenerate

    // ---------------------------------------------------------------- control
    wire en;          // global pipeline enable
    wire load_now;    // cur <= buf this cycle

    // input buffer
    reg [IN*A_W-1:0] buf_data;
    reg [TAG_W-1:0]  buf_tag;
    reg              buf_full;
    wire             s_fire = s_tvalid && s_tready;

    generate
        if (II == 1) begin : g_ready_ii1
            assign s_tready = !buf_full || load_now;
        end else begin : g_ready
            assign s_tready = !buf_full;
        end
    endgenerate

    always @(posedge clk) begin
        if (s_fire) begin
            buf_data <= s_tdata;
            buf_tag  <= s_tuser;
        end
        if (rst) begin
            buf_full <= 1'b0;
        end else if (s_fire) begin
            buf_full <= 1'b1;
        end else if (load_now) begin
            buf_full <= 1'b0;
        end
    end

    // issue stage: current sample and tile counters
    reg [IN*A_W-1:0] cur;
    reg [TAG_W-1:0]  cur_tag;
    reg              busy;
    reg [ADDR_W-1:0] addr;
    reg [FI_W-1:0]   fi;
    reg [FO_W-1:0]   fo;

    // rotate by SIMD elements per tile: the next tile's inputs come to the bottom
    wire [IN*A_W-1:0] cur_next;
    generate
        if (SF > 1) begin : g_rotate
            assign cur_next = {cur[SIMD*A_W-1:0], cur[IN*A_W-1:SIMD*A_W]};
        end else begin : g_keep
            assign cur_next = cur;
        end
    endgenerate

    wire last_fi    = (fi == LAST_FI[FI_W-1:0]);
    wire last_fo    = (fo == LAST_FO[FO_W-1:0]);
    wire last_tile  = (addr == LAST_A[ADDR_W-1:0]);
    wire issue      = en && busy;
    assign load_now = en && buf_full && (!busy || last_tile);

    always @(posedge clk) begin
        if (load_now) begin
            cur     <= buf_data;
            cur_tag <= buf_tag;
        end else if (issue) begin
            cur <= cur_next;
        end
        if (rst) begin
            busy <= 1'b0;
            addr <= {ADDR_W{1'b0}};
            fi   <= {FI_W{1'b0}};
            fo   <= {FO_W{1'b0}};
        end else if (en) begin
            if (load_now) begin
                busy <= 1'b1;
            end else if (busy && last_tile) begin
                busy <= 1'b0;
            end
            if (issue) begin
                addr <= last_tile ? {ADDR_W{1'b0}} : addr + 1'b1;
                fi   <= last_fi ? {FI_W{1'b0}} : fi + 1'b1;
                if (last_fi) begin
                    fo <= last_fo ? {FO_W{1'b0}} : fo + 1'b1;
                end
            end
        end
    end

    // stage 1: weight tile, input slice, control
    reg [WORD_W-1:0]      w_q;
    reg [SIMD*A_W-1:0]    x_q;
    reg                   v1, first1, last1, lastfo1;
    reg [FO_W-1:0]        fo1;
    reg [TAG_W-1:0]       tag1;

    always @(posedge clk) begin
        if (en) begin
            w_q     <= wmem[addr];
            x_q     <= cur[SIMD*A_W-1:0];
            first1  <= (fi == {FI_W{1'b0}});
            last1   <= last_fi;
            lastfo1 <= last_fo;
            fo1     <= fo;
            tag1    <= cur_tag;
        end
        if (rst) begin
            v1 <= 1'b0;
        end else if (en) begin
            v1 <= issue;
        end
    end

    // stage 2: PE dot products of SIMD terms, bias read
    wire [PE*S_W-1:0]  dot;
    reg  [PE*S_W-1:0]  dot_q;
    reg  [PE*B_W-1:0]  b_q;
    reg                v2, first2, last2, lastfo2;
    reg [FO_W-1:0]     fo2;
    reg [TAG_W-1:0]    tag2;

    genvar p, s;
    generate
        for (p = 0; p < PE; p = p + 1) begin : g_pe
            wire [SIMD*P_W-1:0] prod;
            for (s = 0; s < SIMD; s = s + 1) begin : g_simd
                wire [A_W-1:0]        xa = x_q[s*A_W +: A_W];
                wire signed [X_W-1:0] xs = $signed({(A_SIGNED != 0) & xa[A_W-1], xa});
                wire signed [W_W-1:0] ws = $signed(w_q[(p*SIMD + s)*W_W +: W_W]);
                // the top bit of the full product is redundant: |x*w| < 2^(P_W-1)
                wire signed [X_W+W_W-1:0] pf = xs * ws;
                assign prod[s*P_W +: P_W] = pf[P_W-1:0];
                wire unused_pf = &{1'b0, pf[X_W+W_W-1]};
            end
            reg [S_W-1:0] sum;
            integer k;
            always @* begin
                sum = {S_W{1'b0}};
                for (k = 0; k < SIMD; k = k + 1) begin
                    sum = sum + {{(S_W - P_W){prod[k*P_W + P_W - 1]}}, prod[k*P_W +: P_W]};
                end
            end
            assign dot[p*S_W +: S_W] = sum;
        end
    endgenerate

    always @(posedge clk) begin
        if (en) begin
            dot_q   <= dot;
            b_q     <= bmem[fo1];
            first2  <= first1;
            last2   <= last1;
            lastfo2 <= lastfo1;
            fo2     <= fo1;
            tag2    <= tag1;
        end
        if (rst) begin
            v2 <= 1'b0;
        end else if (en) begin
            v2 <= v1;
        end
    end

    // stage 3: accumulate (bias on the first tile of an output fold)
    reg  [PE*ACC_W-1:0] acc;
    reg                 done3, lastfo3;
    reg [FO_W-1:0]      fo3;
    reg [TAG_W-1:0]     tag3;

    generate
        for (p = 0; p < PE; p = p + 1) begin : g_acc
            wire signed [ACC_W-1:0] d = $signed({{(ACC_W - S_W){dot_q[p*S_W + S_W - 1]}}, dot_q[p*S_W +: S_W]});
            wire signed [ACC_W-1:0] b = $signed({{(ACC_W - B_W){b_q[p*B_W + B_W - 1]}}, b_q[p*B_W +: B_W]});
            wire signed [ACC_W-1:0] a = $signed(acc[p*ACC_W +: ACC_W]);
            always @(posedge clk) begin
                if (en && v2) begin
                    acc[p*ACC_W +: ACC_W] <= (first2 ? b : a) + d;
                end
            end
        end
    endgenerate

    always @(posedge clk) begin
        if (en) begin
            lastfo3 <= lastfo2;
            fo3     <= fo2;
            tag3    <= tag2;
        end
        if (rst) begin
            done3 <= 1'b0;
        end else if (en) begin
            done3 <= v2 && last2;
        end
    end

    // stage 4: requantise the finished fold; collect folds; output register
    wire [PE*OUT_W-1:0] y;
    generate
        for (p = 0; p < PE; p = p + 1) begin : g_rq
            round_shift_sat #(
                .IN_W(ACC_W), .SHIFT(SHIFT), .OUT_W(OUT_W), .OUT_SIGNED(OUT_SIGNED),
                .OUT_MIN(OUT_MIN), .OUT_MAX(OUT_MAX)
            ) u_rss (
                .in(acc[p*ACC_W +: ACC_W]),
                .out(y[p*OUT_W +: OUT_W])
            );
        end
    endgenerate

    reg [OUT*OUT_W-1:0] out_q;
    reg [TAG_W-1:0]     out_tag;
    reg                 out_valid;
    wire                finish = done3 && lastfo3;

    // stall only when the last fold is finished and the previous result is still held
    assign en = !(finish && out_valid && !m_tready);

    generate
        if (NF > 1) begin : g_collect
            reg [(NF-1)*PE*OUT_W-1:0] res;
            genvar g;
            for (g = 0; g < NF - 1; g = g + 1) begin : g_fold
                localparam [FO_W-1:0] FOLD = g;
                always @(posedge clk) begin
                    if (en && done3 && fo3 == FOLD) begin
                        res[g*PE*OUT_W +: PE*OUT_W] <= y;
                    end
                end
            end
            always @(posedge clk) begin
                if (en && finish) begin
                    out_q <= {y, res};
                end
            end
        end else begin : g_direct
            wire unused_fo3 = &{1'b0, fo3};
            always @(posedge clk) begin
                if (en && finish) begin
                    out_q <= y;
                end
            end
        end
    endgenerate

    always @(posedge clk) begin
        if (en && finish) begin
            out_tag <= tag3;
        end
        if (rst) begin
            out_valid <= 1'b0;
        end else if (en && finish) begin
            out_valid <= 1'b1;
        end else if (m_tready) begin
            out_valid <= 1'b0;
        end
    end

    assign m_tdata  = out_q;
    assign m_tvalid = out_valid;
    assign m_tuser  = out_tag;
endmodule

`default_nettype wire
