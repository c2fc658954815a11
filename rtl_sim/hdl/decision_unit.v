// decision_unit: the early-exit decision after an exit head (design.md section 3).
//
// Bit-exact with eehw/policies.py:
//   POLICY 0 (margin):            confidence = margin_score(z) = top1 - top2 (top2 is the second
//                                 largest of the multiset, so equal maxima give 0);
//                                 exit = enable && confidence >= threshold.
//   POLICY 1 (max_softmax_pow2):  confidence = pow2_softmax_sum(z, SHIFT, FRAC_BITS)
//                                 = sum_i (2^F >> min((max - z_i) >> SHIFT, F + 1));
//                                 exit = enable && confidence <= threshold.
//   class = np.argmax(z): the lowest index among the maxima.
// Logits and threshold: s_tdata[i*LOGIT_W +: LOGIT_W] is the signed logit of class i; threshold is
// unsigned. `threshold` and `enable` are quasi-static CSR inputs: they are sampled in the last
// pipeline stage, i.e. when a sample's result is registered, not when the sample enters.
//
// Output beat packing (OUT_W = CONF_W + CLASS_W + 1 bits, the layout exit_merge expects):
//   m_tdata[0]                          exit flag
//   m_tdata[CLASS_W:1]                  class, CLASS_W = max(1, clog2(N_CLASSES))
//   m_tdata[OUT_W-1:CLASS_W+1]          confidence, unsigned; CONF_W = LOGIT_W + 1 (margin) or
//                                       FRAC_BITS + bitlength(N_CLASSES) (pow2, = pow2_sum_bits)
//   m_tuser                             the tag of the sample (s_tuser), order preserved.
//
// Two architectures (SERIAL), the same function, interface and output packing:
//
// SERIAL = 0, a pipeline: a registered top-2 comparison tree of clog2(N) levels (each node
// carries top1, its index and top2; ties keep the left, lower-index node), then
//   margin: 1 stage (subtract, compare, output register);
//   pow2:   1 stage of per-class terms, 1 stage of their sum, 1 output stage (compare).
// LATENCY = clog2(N_CLASSES) + 1 (margin) or + 3 (pow2) cycles from input handshake to m_tvalid
// (10 classes: 5 and 7). Throughput: one sample per cycle. Every stage has its own valid bit and
// loads when it is empty or its successor moves (ce[s] = !v[s] | ce[s+1], with
// m_tready in place of ce[LATENCY+1]), so bubbles are squeezed out under backpressure and no
// sample is lost or duplicated.
// s_tready = ce[1] is a combinational function of m_tready (no path from s_tvalid to s_tready).
//
// SERIAL = 1, one logit a cycle: a scan keeps top1, its index and top2 (margin), or top1 and
// then, in a second scan of the same vector, the sum of the terms (pow2); SCAN = N_CLASSES (margin)
// or 2 * N_CLASSES (pow2) cycles a sample. An idle unit takes the beat at once (s_tready), scans
// logit 0 from s_tdata in that cycle and copies the vector into a register the rest of the scan
// reads: holding the beat for the whole scan instead would hold the head's output register, and
// an MVU whose next vector's first fold is done before the scan ends then stalls (mnist1d_cnn's
// pool_linear head, SF = NF = 10, ran at 110 cycles a sample against its II of 100). A finished
// scan waits in its registers for the output register (a cycle for score and comparison), and
// the next beat is taken in the cycle it leaves.
// LATENCY = SCAN + 1 cycles from s_tvalid on an idle unit to m_tvalid (10 classes: 11 and 21),
// II = SCAN cycles; s_tready is a combinational function of m_tready, not of s_tvalid. The design
// generator uses it wherever the exit's head already needs SCAN cycles or more a sample, so it
// never slows the design (eehw.hw.plan.DecisionFormat.serial_fits).
//
// Yosys 0.23 synth_xilinx (xc7) of the bare module (rtl_sim/tests/hdl_tools.synth_stats), 10
// classes x 16-bit logits, THR_W 17, TAG_W 8, pow2 with SHIFT 1:
//                        LUT    FF   CARRY4
//   margin    SERIAL=0   746   437     38
//   margin    SERIAL=1   202   244     13   (175 / 84 when the scan held the beat, uncopied)
//   pow2      SERIAL=0   769  1024     73
//   pow2      SERIAL=1   190   237     15   (163 / 77 likewise)
// The copy costs N_CLASSES * LOGIT_W flip-flops; the DSE characterises every unit it composes.
`default_nettype none

module decision_unit #(
    parameter integer N_CLASSES = 10,  // number of logits per sample (>= 2)
    parameter integer LOGIT_W   = 16,  // width of one signed logit
    parameter integer POLICY    = 0,   // 0 = margin, 1 = max_softmax_pow2
    parameter integer SHIFT     = 0,   // pow2: right shift of (max - z_i), a temperature of 2^SHIFT
    parameter integer FRAC_BITS = 8,   // pow2: fractional bits F of the sum (the max term is 2^F)
    parameter integer THR_W     = 17,  // threshold register width (unsigned)
    parameter integer TAG_W     = 8,   // sample tag width (tuser)
    parameter integer SERIAL    = 0    // 1: one logit a cycle (see above)
) (
    input  wire                              clk,
    input  wire                              rst,        // synchronous, active high

    input  wire [N_CLASSES*LOGIT_W-1:0]      s_tdata,
    input  wire                              s_tvalid,
    output wire                              s_tready,
    input  wire [TAG_W-1:0]                  s_tuser,

    input  wire [THR_W-1:0]                  threshold,
    input  wire                              enable,     // 0: never exit (exit flag forced low)

    output wire [OUT_W-1:0]                  m_tdata,
    output wire                              m_tvalid,
    input  wire                              m_tready,
    output wire [TAG_W-1:0]                  m_tuser
);
    function integer clog2;
        input integer value;
        integer v;
        begin
            v = value - 1;
            clog2 = 0;
            while (v > 0) begin
                v = v >> 1;
                clog2 = clog2 + 1;
            end
        end
    endfunction

    // Nodes at tree level l (level 0 = the N leaves).
    function integer nodes;
        input integer l;
        begin
            nodes = (N_CLASSES + (1 << l) - 1) >> l;
        end
    endfunction

    // Bit offset of tree level l in the flat vector of all levels (level 0 first).
    function integer level_off;
        input integer l;
        integer m;
        begin
            level_off = 0;
            for (m = 0; m < l; m = m + 1)
                level_off = level_off + nodes(m) * (2 * LOGIT_W + ((clog2(N_CLASSES) < 1) ? 1 : clog2(N_CLASSES)));
        end
    endfunction

    localparam integer CLASS_W = (clog2(N_CLASSES) < 1) ? 1 : clog2(N_CLASSES);
    localparam integer SUM_W   = FRAC_BITS + clog2(N_CLASSES + 1);   // = pow2_sum_bits(N, F)
    localparam integer CONF_W  = (POLICY == 0) ? LOGIT_W + 1 : SUM_W;
    localparam integer OUT_W   = CONF_W + CLASS_W + 1;
    localparam integer LEVELS  = clog2(N_CLASSES);
    localparam integer LATENCY = LEVELS + ((POLICY == 0) ? 1 : 3);
    localparam integer CMP_W   = (CONF_W > THR_W) ? CONF_W : THR_W;
    localparam integer TERM_W  = FRAC_BITS + 1;
    localparam integer NODE_W  = 2 * LOGIT_W + CLASS_W;           // {top2, index, top1}
    localparam integer ALL_W   = level_off(LEVELS + 1);

    // The exit test of both architectures: confidence against threshold, both at one width.
    function passes;
        input [CONF_W-1:0] conf;
        input [THR_W-1:0]  thr;
        reg   [CMP_W-1:0]  conf_x, thr_x;
        begin
            conf_x = {CMP_W{1'b0}};
            conf_x[CONF_W-1:0] = conf;
            thr_x = {CMP_W{1'b0}};
            thr_x[THR_W-1:0] = thr;
            passes = (POLICY == 0) ? (conf_x >= thr_x) : (conf_x <= thr_x);
        end
    endfunction

    generate
    if (SERIAL == 0) begin : g_pipe
        // ---------------------------------------------------------------- handshake
        // ce[s] = !v[s] | ce[s+1] unrolled: stage s moves unless it and every later stage are full
        // and the output is stalled (written flat, without a self-referencing vector).
        reg  [LATENCY:1]   v;          // stage s holds a sample
        wire [LATENCY:1]   ce;         // stage s loads this cycle
        genvar s;
            for (s = 1; s <= LATENCY; s = s + 1) begin : g_ce
                assign ce[s] = m_tready || !(&v[LATENCY:s]);
            end
        assign s_tready = ce[1];

        always @(posedge clk) begin
            if (rst) begin
                v <= {LATENCY{1'b0}};
            end else begin
                if (ce[1]) v[1] <= s_tvalid;
                if (LATENCY > 1) begin : shift_valid
                    integer t;
                    for (t = 2; t <= LATENCY; t = t + 1)
                        if (ce[t]) v[t] <= v[t-1];
                end
            end
        end

        // Tags travel with their samples.
        reg [LATENCY*TAG_W-1:0] tags;
        always @(posedge clk) begin
            if (ce[1]) tags[TAG_W-1:0] <= s_tuser;
            if (LATENCY > 1) begin : shift_tags
                integer t;
                for (t = 2; t <= LATENCY; t = t + 1)
                    if (ce[t]) tags[(t-1)*TAG_W +: TAG_W] <= tags[(t-2)*TAG_W +: TAG_W];
            end
        end

        // ---------------------------------------------------------------- top-2 tree (stages 1..LEVELS)
        // tree[level_off(l) + k*NODE_W +: NODE_W] is node k of level l; level 0 is the input itself,
        // levels 1..LEVELS are registers. A leaf's top2 is the most negative logit, which is never
        // larger than a real second maximum (N >= 2).
        wire [ALL_W-1:0] tree;
        genvar l, k;
            for (k = 0; k < N_CLASSES; k = k + 1) begin : g_leaf
                localparam [CLASS_W-1:0] IDX = k;
                assign tree[k*NODE_W +: NODE_W] = {1'b1, {(LOGIT_W-1){1'b0}}, IDX, s_tdata[k*LOGIT_W +: LOGIT_W]};
            end
            for (l = 1; l <= LEVELS; l = l + 1) begin : g_level
                for (k = 0; k < nodes(l); k = k + 1) begin : g_node
                    localparam integer SRC = level_off(l - 1) + 2 * k * NODE_W;
                    wire [NODE_W-1:0] a = tree[SRC +: NODE_W];
                    wire [NODE_W-1:0] merged;
                    reg  [NODE_W-1:0] q;
                    if (2 * k + 1 < nodes(l - 1)) begin : g_pair
                        wire [NODE_W-1:0]         b   = tree[SRC + NODE_W +: NODE_W];
                        wire signed [LOGIT_W-1:0] a1  = a[LOGIT_W-1:0];
                        wire signed [LOGIT_W-1:0] a2  = a[LOGIT_W+CLASS_W +: LOGIT_W];
                        wire signed [LOGIT_W-1:0] b1  = b[LOGIT_W-1:0];
                        wire signed [LOGIT_W-1:0] b2  = b[LOGIT_W+CLASS_W +: LOGIT_W];
                        wire                      b_wins = b1 > a1;        // a tie keeps the lower index
                        wire signed [LOGIT_W-1:0] top1 = b_wins ? b1 : a1;
                        wire [CLASS_W-1:0]        idx  = b_wins ? b[LOGIT_W +: CLASS_W] : a[LOGIT_W +: CLASS_W];
                        // the loser's top1 competes with the winner's top2
                        wire signed [LOGIT_W-1:0] c1   = b_wins ? a1 : b1;
                        wire signed [LOGIT_W-1:0] c2   = b_wins ? b2 : a2;
                        wire signed [LOGIT_W-1:0] top2 = (c1 > c2) ? c1 : c2;
                        assign merged = {top2, idx, top1};
                    end else begin : g_pass
                        assign merged = a;
                    end
                    always @(posedge clk)
                        if (ce[l]) q <= merged;
                    assign tree[level_off(l) + k * NODE_W +: NODE_W] = q;
                end
            end

        wire [NODE_W-1:0]         root      = tree[level_off(LEVELS) +: NODE_W];
        wire signed [LOGIT_W-1:0] root_top1 = root[LOGIT_W-1:0];
        wire [CLASS_W-1:0]        root_idx  = root[LOGIT_W +: CLASS_W];
        wire signed [LOGIT_W-1:0] root_top2 = root[LOGIT_W+CLASS_W +: LOGIT_W];

        // ---------------------------------------------------------------- score
        wire [CONF_W-1:0]  score;        // valid in the stage before the output stage
        wire [CLASS_W-1:0] score_idx;
            if (POLICY == 0) begin : g_margin
                assign score     = {root_top1[LOGIT_W-1], root_top1} - {root_top2[LOGIT_W-1], root_top2};
                assign score_idx = root_idx;
            end else begin : g_pow2
                // The logits ride along the tree stages to meet their maximum.
                reg  [N_CLASSES*LOGIT_W*LEVELS-1:0] z_line;
                always @(posedge clk) begin : z_shift
                    integer t;
                    if (ce[1]) z_line[0 +: N_CLASSES*LOGIT_W] <= s_tdata;
                    for (t = 2; t <= LEVELS; t = t + 1)
                        if (ce[t]) z_line[(t-1)*N_CLASSES*LOGIT_W +: N_CLASSES*LOGIT_W] <=
                                   z_line[(t-2)*N_CLASSES*LOGIT_W +: N_CLASSES*LOGIT_W];
                end
                wire [N_CLASSES*LOGIT_W-1:0] z = z_line[(LEVELS-1)*N_CLASSES*LOGIT_W +: N_CLASSES*LOGIT_W];

                // Stage LEVELS+1: terms 2^F >> ((max - z_i) >> SHIFT); shifts past F give 0, which is
                // the reference's clamp to F + 1.
                reg [N_CLASSES*TERM_W-1:0] terms;
                reg [CLASS_W-1:0]          terms_idx;
                always @(posedge clk) begin : term_stage
                    integer i;
                    reg [LOGIT_W:0] gap;
                    if (ce[LEVELS+1]) begin
                        for (i = 0; i < N_CLASSES; i = i + 1) begin
                            gap = {root_top1[LOGIT_W-1], root_top1} - {z[i*LOGIT_W+LOGIT_W-1], z[i*LOGIT_W +: LOGIT_W]};
                            terms[i*TERM_W +: TERM_W] <= {1'b1, {FRAC_BITS{1'b0}}} >> (gap >> SHIFT);
                        end
                        terms_idx <= root_idx;
                    end
                end

                // Stage LEVELS+2: their sum.
                reg [SUM_W-1:0]   sum;
                reg [CLASS_W-1:0] sum_idx;
                always @(posedge clk) begin : sum_stage
                    integer i;
                    reg [SUM_W-1:0] acc;
                    if (ce[LEVELS+2]) begin
                        acc = {SUM_W{1'b0}};
                        for (i = 0; i < N_CLASSES; i = i + 1)
                            acc = acc + {{(SUM_W-TERM_W){1'b0}}, terms[i*TERM_W +: TERM_W]};
                        sum     <= acc;
                        sum_idx <= terms_idx;
                    end
                end
                assign score     = sum;
                assign score_idx = sum_idx;
                wire unused_top2 = &{1'b0, root_top2};
            end

        wire pass = passes(score, threshold);

        // ---------------------------------------------------------------- output stage
        reg [OUT_W-1:0] out;
        always @(posedge clk)
            if (ce[LATENCY]) out <= {score, score_idx, enable && pass};

        assign m_tdata  = out;
        assign m_tvalid = v[LATENCY];
        assign m_tuser  = tags[(LATENCY-1)*TAG_W +: TAG_W];

    end else begin : g_serial
        // ------------------------------------------------------------ scan
        localparam integer SCAN  = ((POLICY == 0) ? 1 : 2) * N_CLASSES;
        localparam integer CNT_W = (clog2(SCAN) < 1) ? 1 : clog2(SCAN);
        localparam integer       SCAN_END = SCAN - 1;
        localparam integer       N_END    = N_CLASSES - 1;
        localparam [CNT_W-1:0]   LAST_CNT = SCAN_END[CNT_W-1:0];
        localparam [CLASS_W-1:0] LAST_POS = N_END[CLASS_W-1:0];
        reg  [CNT_W-1:0]          cnt;          // scan cycle of the sample at s_tdata
        reg  [CLASS_W-1:0]        pos;          // its logit read this cycle
        reg                       second;       // pow2: the second scan (terms)
        reg                       done;         // the registers below hold a finished sample
        reg  [TAG_W-1:0]          done_tag;     // the tag of the sample scanned (taken with its beat)
        reg  signed [LOGIT_W-1:0] top1, top2;
        reg  [CLASS_W-1:0]        idx;
        reg  [SUM_W-1:0]          acc;
        reg                       ov;           // output register full
        reg  [OUT_W-1:0]          out;
        reg  [TAG_W-1:0]          out_tag;

        wire unload = done && (!ov || m_tready);   // the finished sample moves to the output register
        wire free   = !done || unload;             // the scan registers may take a new logit
        wire idle   = cnt == {CNT_W{1'b0}};        // no scan under way: the next beat may come in
        wire step   = (s_tvalid || !idle) && free;
        wire last   = cnt == LAST_CNT;
        assign s_tready = idle && free;

        // The vector is copied when taken; the scan reads logit pos from the copy (logit 0 in the
        // first cycle from s_tdata). An array indexed by pos: a part-select at pos*LOGIT_W is a
        // barrel shifter when LOGIT_W is not a power of two (10 x 12 bits: 248 LUT against 136).
        reg  [N_CLASSES*LOGIT_W-1:0] zv;
        always @(posedge clk)
            if (s_tvalid && s_tready) zv <= s_tdata;
        wire [LOGIT_W-1:0] logit [0:N_CLASSES-1];
        genvar gz;
        for (gz = 0; gz < N_CLASSES; gz = gz + 1) begin : g_logit
            assign logit[gz] = zv[gz*LOGIT_W +: LOGIT_W];
        end
        wire signed [LOGIT_W-1:0] z = idle ? s_tdata[0 +: LOGIT_W] : logit[pos];
        wire [LOGIT_W:0]  gap  = {top1[LOGIT_W-1], top1} - {z[LOGIT_W-1], z};
        wire [TERM_W-1:0] term = {1'b1, {FRAC_BITS{1'b0}}} >> (gap >> SHIFT);

        always @(posedge clk) begin
            if (rst) begin
                cnt <= {CNT_W{1'b0}};
                pos <= {CLASS_W{1'b0}};
                second <= 1'b0;
                done <= 1'b0;
                ov <= 1'b0;
            end else begin
                if (unload) ov <= 1'b1;
                else if (m_tready) ov <= 1'b0;
                if (step) begin
                    cnt    <= last ? {CNT_W{1'b0}} : cnt + 1'b1;
                    pos    <= (pos == LAST_POS) ? {CLASS_W{1'b0}} : pos + 1'b1;
                    second <= (pos == LAST_POS) ? (!second && POLICY != 0) : second;
                    done   <= last || (done && !unload);
                end else if (unload) begin
                    done <= 1'b0;
                end
            end
        end

        // Ties keep the earlier (lower) index as top1; an equal value still becomes top2.
        always @(posedge clk) begin
            if (step && !second) begin
                if (pos == 0) begin
                    top1 <= z;
                    idx  <= {CLASS_W{1'b0}};
                    top2 <= {1'b1, {(LOGIT_W-1){1'b0}}};
                end else if (z > top1) begin
                    top2 <= top1;
                    top1 <= z;
                    idx  <= pos;
                end else if (z > top2) begin
                    top2 <= z;
                end
            end
            if (step && second)
                acc <= ((pos == 0) ? {SUM_W{1'b0}} : acc) + {{(SUM_W-TERM_W){1'b0}}, term};
            if (s_tvalid && s_tready)   // read only once the scan is done (an unload this cycle reads the old one)
                done_tag <= s_tuser;
        end

        wire [CONF_W-1:0] score;
        if (POLICY == 0) begin : g_margin
            assign score = {top1[LOGIT_W-1], top1} - {top2[LOGIT_W-1], top2};
            wire unused_acc = &{1'b0, acc};
        end else begin : g_pow2
            assign score = acc;
        end
        wire pass = passes(score, threshold);
        always @(posedge clk)
            if (unload) begin
                out     <= {score, idx, enable && pass};
                out_tag <= done_tag;
            end

        assign m_tdata  = out;
        assign m_tvalid = ov;
        assign m_tuser  = out_tag;
    end
    endgenerate
endmodule

`default_nettype wire
