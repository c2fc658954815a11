// mvu: streaming, folded matrix-vector unit with requantised output (eehw.golden.Dense then
// Quant), in the manner of FINN's MVAU.
//
//   acc[o] = sum_i W[o][i] * x[i] + b[o]          (exact, ACC_W bits, cannot overflow)
//   y[o]   = clamp(round_half_even(acc[o] * 2^-SHIFT), OUT_MIN, OUT_MAX)
//
// Streams (AXI-Stream, rtl_sim stream contract):
//   input   one vector x of IN elements = SF = IN/SIMD beats of SIMD elements of A_W bits
//           (A_SIGNED); beat f holds x[f*SIMD + s] at s_tdata[s*A_W +: A_W]. Vectors follow back
//           to back (a convolution sends one per output position). The vector's tag and tlast
//           are those of its last beat (tuser must be the same on all beats of a vector).
//   output  one beat per vector: OUT elements of OUT_W bits, y[o] at m_tdata[o*OUT_W +: OUT_W];
//           m_tuser = the vector's tag, m_tlast = the s_tlast of the vector's last beat.
//
// Folding: NF = OUT/PE output folds. Each compute cycle multiplies one SIMD-slice of x by a
// PE x SIMD weight tile and accumulates PE sums; tiles are visited in weight-memory order
// (f_out outer, f_in inner).
//   NF = 1: no input buffer; a vector is consumed as it arrives, one tile per input beat.
//   NF > 1: the input buffer holds two vectors (ping-pong, 2 banks of SF words of SIMD*A_W
//           bits, bank address {bank, f_in}); one bank is written while the other is read
//           NF times, one SIMD slice per cycle (no whole-vector registers).
//
// Timing (exact, data independent; idle unit, m_tready high):
//   II       = SF * NF cycles per vector, sustained on back-to-back vectors
//              (SF = NF = 1: one vector per cycle). NF = 1: s_tready stays high.
//   L_last   = 4 + (NF > 1 ? SF * NF : 0)
//              cycles from the edge that transfers a vector's last input beat to the edge that
//              can transfer its output beat (m_tvalid rises after edge t + L_last - 1).
//   L_first  = SF - 1 + L_last   from the edge of the vector's first input beat, when its SF
//              beats arrive on consecutive cycles.
//   Later vectors of a back-to-back stream come out exactly II cycles apart.
// Handshakes: s_tready is a register function (NF > 1: the write bank is free; NF = 1: the
// pipeline is not stalled, from registers only); m_tvalid is a register. No combinational path
// from m_tready to s_tready. m_tready low stalls the internal pipeline only when a finished fold
// would overwrite an output beat that has not been taken (NF = 1: when both output entries are
// full); inputs keep being accepted into the free input bank meanwhile (NF > 1).
//
// Pipeline: issue (weight / input-buffer address; synchronous reads) -> stage 1 (weight tile,
// x slice) -> stage 2 (PE dot products of SIMD terms, PARTS partial sums each; bias read) ->
// stage 3 (PE accumulators, bias loaded on the first tile of each output fold) -> stage 4
// (round_shift_sat per PE lane into the output register). NF > 1: the output register
// (OUT*OUT_W) collects the folds by shifting in PE elements per fold (fold NF-1 enters last, at
// the top) and is written only when empty or being taken. NF = 1: the output is a 2-entry queue
// (head + spare), so that s_tready never waits for m_tready combinationally.
//
// Memories (eehw/rtl_weights.py): WEIGHT_FILE, NF*SF words of PE*SIMD*W_W bits, word
// f_out*SF + f_in, lane (p, s) at bits [(p*SIMD + s)*W_W +: W_W] = W[f_out*PE + p][f_in*SIMD + s];
// BIAS_FILE, NF words of PE*B_W bits, lane p = b[f_out*PE + p]; two's complement, $readmemh.
// All reads are synchronous (one register, enable = pipeline enable).
//
// Memory styles (string parameters; any other value is an elaboration error):
//   W_STYLE  weight ROM: "block" -> RAMB18E1/RAMB36E1, "distributed" or "registers" -> LUTs
//            (a ROM in LUT6s; Yosys 0.23 refuses LUTRAM for ROMs, see below), "auto" -> block
//            iff NF*SF*PE*SIMD*W_W >= 4096 bits and NF*SF > 64 words, else LUTs.
//            The bias ROM (NF x PE*B_W) follows the same "auto" rule on its own size, except
//            that "distributed"/"registers" force LUTs (it is never put in block RAM just
//            because W_STYLE = "block").
//   IN_STYLE input buffer (NF > 1 only): "block" -> RAMB18E1, "distributed" -> LUTRAM
//            (RAM32M / RAM64M / RAM64X1D ...), "registers" -> flip-flops, "auto" -> block iff
//            2*SF*SIMD*A_W >= 1024 bits and 2*SF > 64 words, else distributed.
//   The choice is written as a (* ram_style *) attribute: "block", "distributed", "registers",
//   or "logic" for a LUT ROM. Yosys 0.23 memory_libmap reads ram_style before rom_style; a ROM
//   with rom_style/ram_style = "distributed" fails ("no valid mapping found") because its
//   xc7 LUTRAM definitions carry prune_rom, which is why eehw/synth.py unsets rom_style: this
//   module uses ram_style only, so that command leaves the per-layer choice intact.
//
// Resources (Yosys 0.23 synth_xilinx -family xc7 -flatten, hdl_tools.synth_stats; A_W = W_W = 4
// unsigned x, B_W = 10, OUT_W = 4, TAG_W = 8, random weights; LUT includes LUTRAM and SRL, BRAM18
// counts a RAMB36E1 as 2; `python rtl_sim/tests/test_mvu.py` prints it):
//   IN  OUT  SIMD x PE  W_STYLE -> ROM     IN_STYLE -> buffer  II       LUT     FF  BRAM18  LUTRAM  DSP
//   72  16    1 x 1     auto -> block      auto -> LUTRAM      1152     178    175     1      32     0
//   72  16    8 x 2     auto -> block      auto -> LUTRAM        72     673    233     2      24     0
//   72  16    8 x 2     distributed        distributed           72     826    297     0      24     0
//   72  16   72 x 16    auto -> LUT (1 word: constants)  (NF=1)   1   24853    967     0       0     0
//  784  32    1 x 1     block              auto -> block      25088     200    254     7       0     0
//  784  32   16 x 4     block              auto -> block        392    2560    364    10       0     0
// The fixed part (1 lane) is about 180-200 LUT / 175-255 FF; LUTs grow about 30-40 per lane
// (one 4x4 product and its share of the adder tree; 72 x 16 with constant weights: 21.6 per
// weight). Products narrower than 9 bits stay in LUTs; Yosys maps >= 9-bit products (e.g. 8-bit
// x 8-bit) to one DSP48E1 each, summed in cascades of at most 3 (PARTS below; IN = SIMD = 9,
// OUT = PE = 8, 8-bit unsigned x: 596 LUT, 258 FF, 72 DSP, 5.5 ns logic-only; one cascade of 9:
// 222 LUT, 258 FF, 13.0 ns).
// Cells seen: RAMB18E1, RAMB36E1, RAM32M, RAM64M, SRL16E (tag pipeline), CARRY4, LUT1-6,
// MUXF7/8, FDRE/FDSE.
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
    parameter         BIAS_FILE   = "",
    parameter [8*11-1:0] W_STYLE  = "auto",  // weight (and bias) ROM: auto, block, distributed, registers
    parameter [8*11-1:0] IN_STYLE = "auto"   // input buffer (NF > 1): auto, block, distributed, registers
) (
    input  wire                 clk,
    input  wire                 rst,       // synchronous, active high

    input  wire [SIMD*A_W-1:0]  s_tdata,
    input  wire                 s_tvalid,
    output wire                 s_tready,
    input  wire [TAG_W-1:0]     s_tuser,
    input  wire                 s_tlast,

    output wire [OUT*OUT_W-1:0] m_tdata,
    output wire                 m_tvalid,
    input  wire                 m_tready,
    output wire [TAG_W-1:0]     m_tuser,
    output wire                 m_tlast
);
    localparam integer SF      = IN / SIMD;
    localparam integer NF      = OUT / PE;
    localparam integer DEPTH   = NF * SF;
    localparam integer WORD_W  = PE * SIMD * W_W;
    localparam integer XB_W    = SIMD * A_W;         // one input beat / buffer word
    localparam integer X_W     = A_W + 1;            // input lane read as signed
    localparam integer P_W     = A_W + W_W;          // one product: exact in A_W + W_W signed bits
    localparam integer S_W     = P_W + $clog2(SIMD) + 1;    // sum of SIMD products (+1: no zero-width extension)
    // Partial sums per lane. Yosys maps >= 9-bit products to DSP48E1s and a sum of them to a
    // cascade of the DSPs' post-adders (PCIN), about 1.25 ns a link: SIMD 9 as one sum took
    // 13.0 ns logic-only, over the 10 ns period. So stage 2 keeps each cascade to CASCADE
    // products (PARTS partial sums, still absorbed by the DSPs) and stage 3 adds the partials
    // into the accumulator in LUTs: SIMD 9, PE 8, 8-bit x 4-bit: 5.5 ns, +374 LUT, no FF (a
    // balanced adder tree in stage 2 took 5.4 ns for +746 LUT and +136 FF). LUT products keep
    // one sum (Yosys merges it into one $macc whatever its shape).
    localparam integer CASCADE = 3;
    localparam integer PARTS   = (P_W >= 9) ? (SIMD + CASCADE - 1) / CASCADE : 1;
    // Accumulator: every product fits A_W + W_W signed bits and IN of them add clog2(IN) bits;
    // one bit more for the bias (or B_W + 1 if the bias is wider), and never narrower than a
    // SIMD partial sum: no sample can overflow it (eehw.rtl_weights.acc_width).
    localparam integer SUM_W   = A_W + W_W + $clog2(IN) + 1;
    localparam integer ACC_W0  = (SUM_W > B_W) ? SUM_W : B_W;
    localparam integer ACC_W   = ((ACC_W0 > S_W) ? ACC_W0 : S_W) + 1;
    localparam integer ADDR_W  = (DEPTH > 1) ? $clog2(DEPTH) : 1;
    localparam integer FI_W    = (SF > 1) ? $clog2(SF) : 1;
    localparam integer FO_W    = (NF > 1) ? $clog2(NF) : 1;
    localparam integer LAST_FI = SF - 1;
    localparam integer LAST_FO = NF - 1;
    localparam integer LAST_A  = DEPTH - 1;
    // input buffer: address {bank, f_in} (f_in only when SF > 1)
    localparam integer IB_AW   = (SF > 1) ? FI_W + 1 : 1;
    localparam integer IB_WORDS = 1 << IB_AW;

    // memory kinds: 0 registers / LUT logic, 1 distributed, 2 block, -1 unknown
    localparam integer W_BITS   = DEPTH * WORD_W;
    localparam integer B_BITS   = NF * PE * B_W;
    localparam integer IB_BITS  = 2 * SF * XB_W;
    localparam integer W_AUTO   = (W_BITS >= 4096 && DEPTH > 64) ? 2 : 1;
    localparam integer B_AUTO   = (B_BITS >= 4096 && NF > 64) ? 2 : 1;
    localparam integer IB_AUTO  = (IB_BITS >= 1024 && 2 * SF > 64) ? 2 : 1;
    localparam [8*11-1:0] S_AUTO  = "auto";
    localparam [8*11-1:0] S_BLOCK = "block";
    localparam [8*11-1:0] S_DIST  = "distributed";
    localparam [8*11-1:0] S_REGS  = "registers";
    localparam integer W_KIND   = (W_STYLE == S_BLOCK) ? 2 : (W_STYLE == S_DIST) ? 1 :
                                  (W_STYLE == S_REGS) ? 0 : (W_STYLE == S_AUTO) ? W_AUTO : -1;
    localparam integer B_KIND   = (W_KIND == 2) ? B_AUTO : (W_KIND == -1) ? -1 : (W_STYLE == S_AUTO) ? B_AUTO : 1;
    localparam integer IB_KIND  = (IN_STYLE == S_BLOCK) ? 2 : (IN_STYLE == S_DIST) ? 1 :
                                  (IN_STYLE == S_REGS) ? 0 : (IN_STYLE == S_AUTO) ? IB_AUTO : -1;

    generate
        if (IN % SIMD != 0 || OUT % PE != 0) begin : g_bad_folding
            mvu_SIMD_must_divide_IN_and_PE_must_divide_OUT u_error ();
        end
        if (W_KIND < 0 || IB_KIND < 0) begin : g_bad_style
            mvu_W_STYLE_and_IN_STYLE_must_be_auto_block_distributed_or_registers u_error ();
        end
    endgenerate

    // ---------------------------------------------------------------- control signals
    wire en;                 // global pipeline enable (issue and stages 1-4)
    wire s_fire = s_tvalid && s_tready;

    // issue counters: weight address, input fold, output fold
    reg  [ADDR_W-1:0] addr;
    reg  [FI_W-1:0]   fi;
    reg  [FO_W-1:0]   fo;
    wire              issue;                 // a tile is issued this cycle (and en)
    wire              last_fi   = (fi == LAST_FI[FI_W-1:0]);
    wire              last_fo   = (fo == LAST_FO[FO_W-1:0]);
    wire              last_tile = (addr == LAST_A[ADDR_W-1:0]);

    always @(posedge clk) begin
        if (rst) begin
            addr <= {ADDR_W{1'b0}};
            fi   <= {FI_W{1'b0}};
            fo   <= {FO_W{1'b0}};
        end else if (issue) begin
            addr <= last_tile ? {ADDR_W{1'b0}} : addr + 1'b1;
            fi   <= last_fi ? {FI_W{1'b0}} : fi + 1'b1;
            if (last_fi) begin
                fo <= last_fo ? {FO_W{1'b0}} : fo + 1'b1;
            end
        end
    end

    // ---------------------------------------------------------------- weight and bias ROMs
    reg [WORD_W-1:0] w_q;      // stage 1: weight tile (synchronous ROM read)
    reg [PE*B_W-1:0] b_q;      // stage 2: bias (synchronous ROM read)
    reg [FO_W-1:0]   fo1;

    /* verilator lint_off UNDRIVEN */
    generate
        if (W_KIND == 2) begin : g_wmem_block
            (* ram_style = "block" *) reg [WORD_W-1:0] wmem [0:DEPTH-1];
            if (WEIGHT_FILE != "") begin : g_file
                initial $readmemh(WEIGHT_FILE, wmem);
            end
            always @(posedge clk) begin
                if (en) w_q <= wmem[addr];
            end
        end else begin : g_wmem_logic
            (* ram_style = "logic" *) reg [WORD_W-1:0] wmem [0:DEPTH-1];
            if (WEIGHT_FILE != "") begin : g_file
                initial $readmemh(WEIGHT_FILE, wmem);
            end
            always @(posedge clk) begin
                if (en) w_q <= wmem[addr];
            end
        end
        if (B_KIND == 2) begin : g_bmem_block
            (* ram_style = "block" *) reg [PE*B_W-1:0] bmem [0:NF-1];
            if (BIAS_FILE != "") begin : g_file
                initial $readmemh(BIAS_FILE, bmem);
            end
            always @(posedge clk) begin
                if (en) b_q <= bmem[fo1];
            end
        end else begin : g_bmem_logic
            (* ram_style = "logic" *) reg [PE*B_W-1:0] bmem [0:NF-1];
            if (BIAS_FILE != "") begin : g_file
                initial $readmemh(BIAS_FILE, bmem);
            end
            always @(posedge clk) begin
                if (en) b_q <= bmem[fo1];
            end
        end
    endgenerate
    /* verilator lint_on UNDRIVEN */

    // ---------------------------------------------------------------- input side
    reg [XB_W-1:0]  x_q;       // stage 1: x slice
    reg [TAG_W-1:0] tag1;
    reg             tlast1;

    generate
        if (NF == 1) begin : g_direct_in
            // The beat is the tile: issue = accepted beat. Stalled only by a full output queue.
            assign s_tready = en;
            assign issue    = s_fire;
            always @(posedge clk) begin
                if (en) begin
                    x_q    <= s_tdata;
                    tag1   <= s_tuser;
                    tlast1 <= s_tlast;
                end
            end
        end else begin : g_buffered_in
            reg              wb, rb;              // write bank, read bank
            reg  [FI_W-1:0]  wi;                  // write index in the bank
            reg              full0, full1;        // bank holds a whole vector not yet computed
            reg [TAG_W-1:0]  tag_b0, tag_b1;
            reg              last_b0, last_b1;
            wire             w_last  = (wi == LAST_FI[FI_W-1:0]);
            wire             rd_full = rb ? full1 : full0;
            wire [IB_AW-1:0] waddr, raddr;
            if (SF > 1) begin : g_addr
                assign waddr = {wb, wi};
                assign raddr = {rb, fi};
            end else begin : g_addr1
                assign waddr = wb;
                assign raddr = rb;
                wire unused_fi = &{1'b0, wi, fi};
            end

            assign s_tready = wb ? !full1 : !full0;
            assign issue    = en && rd_full;

            always @(posedge clk) begin
                if (s_fire && w_last) begin
                    if (wb) begin
                        tag_b1  <= s_tuser;
                        last_b1 <= s_tlast;
                    end else begin
                        tag_b0  <= s_tuser;
                        last_b0 <= s_tlast;
                    end
                end
                if (en) begin
                    tag1   <= rb ? tag_b1 : tag_b0;
                    tlast1 <= rb ? last_b1 : last_b0;
                end
                if (rst) begin
                    wb    <= 1'b0;
                    rb    <= 1'b0;
                    wi    <= {FI_W{1'b0}};
                    full0 <= 1'b0;
                    full1 <= 1'b0;
                end else begin
                    if (s_fire) begin
                        wi <= w_last ? {FI_W{1'b0}} : wi + 1'b1;
                        if (w_last) begin
                            wb <= !wb;
                            if (wb) full1 <= 1'b1; else full0 <= 1'b1;
                        end
                    end
                    if (issue && last_tile) begin
                        rb <= !rb;
                        if (rb) full1 <= 1'b0; else full0 <= 1'b0;
                    end
                end
            end

            if (IB_KIND == 2) begin : g_ibuf_block
                (* ram_style = "block" *) reg [XB_W-1:0] ibuf [0:IB_WORDS-1];
                always @(posedge clk) begin
                    if (s_fire) ibuf[waddr] <= s_tdata;
                end
                always @(posedge clk) begin
                    if (en) x_q <= ibuf[raddr];
                end
            end else if (IB_KIND == 1) begin : g_ibuf_dist
                (* ram_style = "distributed" *) reg [XB_W-1:0] ibuf [0:IB_WORDS-1];
                always @(posedge clk) begin
                    if (s_fire) ibuf[waddr] <= s_tdata;
                end
                always @(posedge clk) begin
                    if (en) x_q <= ibuf[raddr];
                end
            end else begin : g_ibuf_regs
                (* ram_style = "registers" *) reg [XB_W-1:0] ibuf [0:IB_WORDS-1];
                always @(posedge clk) begin
                    if (s_fire) ibuf[waddr] <= s_tdata;
                end
                always @(posedge clk) begin
                    if (en) x_q <= ibuf[raddr];
                end
            end
        end
    endgenerate

    // ---------------------------------------------------------------- stage 1 control
    reg v1, first1, last1, lastfo1;
    always @(posedge clk) begin
        if (en) begin
            first1  <= (fi == {FI_W{1'b0}});
            last1   <= last_fi;
            lastfo1 <= last_fo;
            fo1     <= fo;
        end
        if (rst) begin
            v1 <= 1'b0;
        end else if (en) begin
            v1 <= issue;
        end
    end

    // ---------------------------------------------------------------- stage 2: dot products
    wire [PE*PARTS*S_W-1:0] dot;
    reg  [PE*PARTS*S_W-1:0] dot_q;
    reg                v2, first2, last2, lastfo2, tlast2;
    reg [TAG_W-1:0]    tag2;

    genvar p, s;
    generate
        for (p = 0; p < PE; p = p + 1) begin : g_pe
            wire [SIMD*P_W-1:0] prod;
            for (s = 0; s < SIMD; s = s + 1) begin : g_simd
                wire [A_W-1:0]        xa = x_q[s*A_W +: A_W];
                wire signed [X_W-1:0] xs = $signed({(A_SIGNED != 0) & xa[A_W-1], xa});
                wire signed [W_W-1:0] ws = $signed(w_q[(p*SIMD + s)*W_W +: W_W]);
                // exact in P_W bits (|x*w| < 2^(P_W-1)); a P_W-wide product keeps 4x4-bit
                // multiplies (8-bit results) in LUTs: Yosys maps only >= 9-bit results to DSP48E1
                wire signed [P_W-1:0] pf = xs * ws;
                assign prod[s*P_W +: P_W] = pf;
            end
            // PARTS partial sums, product k in partial k mod PARTS
            for (s = 0; s < PARTS; s = s + 1) begin : g_part
                reg [S_W-1:0] sum;
                integer k;
                always @* begin
                    sum = {S_W{1'b0}};
                    for (k = s; k < SIMD; k = k + PARTS) begin
                        sum = sum + {{(S_W - P_W){prod[k*P_W + P_W - 1]}}, prod[k*P_W +: P_W]};
                    end
                end
                assign dot[(p*PARTS + s)*S_W +: S_W] = sum;
            end
        end
    endgenerate

    always @(posedge clk) begin
        if (en) begin
            dot_q   <= dot;
            first2  <= first1;
            last2   <= last1;
            lastfo2 <= lastfo1;
            tag2    <= tag1;
            tlast2  <= tlast1;
        end
        if (rst) begin
            v2 <= 1'b0;
        end else if (en) begin
            v2 <= v1;
        end
    end

    // ---------------------------------------------------------------- stage 3: accumulate
    reg  [PE*ACC_W-1:0] acc;
    reg                 done3, lastfo3, tlast3;
    reg [TAG_W-1:0]     tag3;

    generate
        for (p = 0; p < PE; p = p + 1) begin : g_acc
            reg signed [ACC_W-1:0] d;   // the lane's dot product: its partial sums added
            integer j;
            always @* begin
                d = {ACC_W{1'b0}};
                for (j = 0; j < PARTS; j = j + 1) begin
                    d = d + $signed({{(ACC_W - S_W){dot_q[(p*PARTS + j)*S_W + S_W - 1]}}, dot_q[(p*PARTS + j)*S_W +: S_W]});
                end
            end
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
            tag3    <= tag2;
            tlast3  <= tlast2;
        end
        if (rst) begin
            done3 <= 1'b0;
        end else if (en) begin
            done3 <= v2 && last2;
        end
    end

    // ---------------------------------------------------------------- stage 4: requantise, output
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
    reg                 out_last;
    reg                 out_valid;

    generate
        if (NF > 1) begin : g_out_collect
            // Folds shift in at the top; written only while the register is free or being taken.
            assign en = !(done3 && out_valid && !m_tready);
            always @(posedge clk) begin
                if (en && done3) begin
                    out_q <= {y, out_q[OUT*OUT_W-1:PE*OUT_W]};
                end
                if (en && done3 && lastfo3) begin
                    out_tag  <= tag3;
                    out_last <= tlast3;
                end
                if (rst) begin
                    out_valid <= 1'b0;
                end else if (en && done3 && lastfo3) begin
                    out_valid <= 1'b1;
                end else if (m_tready) begin
                    out_valid <= 1'b0;
                end
            end
        end else begin : g_out_queue
            // 2-entry queue: head (out_*) and spare (sp_*). The pipeline stalls only when a
            // result is finished and both entries are full (registers only: s_tready = en).
            reg [OUT*OUT_W-1:0] sp_q;
            reg [TAG_W-1:0]     sp_tag;
            reg                 sp_last;
            reg                 sp_valid;
            wire                push = en && done3;
            wire                pop  = out_valid && m_tready;
            wire                unused_lastfo3 = &{1'b0, lastfo3};
            assign en = !(done3 && out_valid && sp_valid);
            always @(posedge clk) begin
                if (pop && sp_valid) begin
                    out_q    <= sp_q;
                    out_tag  <= sp_tag;
                    out_last <= sp_last;
                end else if (push && (!out_valid || pop)) begin
                    out_q    <= y;
                    out_tag  <= tag3;
                    out_last <= tlast3;
                end
                if (push && out_valid && !pop) begin
                    sp_q    <= y;
                    sp_tag  <= tag3;
                    sp_last <= tlast3;
                end
                if (rst) begin
                    out_valid <= 1'b0;
                    sp_valid  <= 1'b0;
                end else begin
                    if (pop) begin
                        out_valid <= sp_valid || push;
                        sp_valid  <= 1'b0;
                    end else if (push) begin
                        out_valid <= 1'b1;
                        sp_valid  <= out_valid;
                    end
                end
            end
        end
    endgenerate

    assign m_tdata  = out_q;
    assign m_tvalid = out_valid;
    assign m_tuser  = out_tag;
    assign m_tlast  = out_last;
endmodule

`default_nettype wire
