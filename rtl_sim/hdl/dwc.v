// dwc: AXI-Stream data width converter: IN_N elements per input beat -> OUT_N per output beat,
// E bits each (element i at tdata[i*E +: E]), element order kept (a sample's element j is
// element j mod OUT_N of its output beat j / OUT_N).
//
// One of IN_N, OUT_N divides the other, and both divide N, the elements per sample (checked at
// elaboration), so a sample is N/IN_N input and N/OUT_N output beats and sample boundaries
// fall on beat boundaries of both streams. Every output beat carries the tag (tuser) of the
// input beat its last element came from; m_tlast = that beat's s_tlast on the output beat that
// holds the input beat's last element, so the sample's last output beat carries tlast (the
// module needs no sample counter; N only checks the folding).
//
// Modes (R = ratio):
//   split  IN_N = R * OUT_N, R > 1: one register of one input beat (IN_N*E bits + tag + tlast)
//          and a slice counter; output beat k is slice k of the held beat (a mux).
//   gather OUT_N = R * IN_N, R > 1: one register of one output beat (OUT_N*E bits): input
//          beats shift in at the top, so the R-th beat of a group lands in the top slice.
//   equal  IN_N = OUT_N: wires (m_* = s_*), no register, latency 0.
//
// Timing (exact, idle module, m_tready high; "edge" = the clock edge of a handshake):
//   split  an input beat every R cycles, an output beat every cycle (back to back);
//          first-beat latency 1 (input edge t -> its first output beat can transfer at t+1),
//          last-beat latency R (its last output beat at t+R); per sample N/OUT_N cycles.
//   gather an input beat every cycle, an output beat every R cycles;
//          last-beat latency 1 (edge of the group's last input beat t -> output at t+1);
//          first-beat latency R (from a group's first input beat, beats on consecutive cycles);
//          per sample N/IN_N cycles.
//   equal  latency 0, one beat per cycle.
// Handshakes: m_tvalid is a register (split, gather). s_tready depends combinationally on
// m_tready (split: s_tready = !full || (m_tready && last slice); gather: s_tready = !full ||
// m_tready), which is what lets both run at full rate with one beat of storage. equal: all
// paths combinational (a wire).
//
// Resources (Yosys 0.23 synth_xilinx -family xc7 -flatten, hdl_tools.synth_stats; E = 4,
// TAG_W = 8; `python rtl_sim/tests/test_dwc.py` prints it; no BRAM18, no LUTRAM):
//   IN_N -> OUT_N   LUT   FF        IN_N -> OUT_N   LUT   FF
//      8 -> 2        14   44           2 -> 8         6   44
//     32 -> 4        56  141           4 -> 32        7  141
//     64 -> 16       70  268          16 -> 64        6  268
// FF = one beat of the wide side + tag + tlast + counter; split LUTs = the R:1 slice mux
// (OUT_N*E muxes), gather LUTs = the counter only.
`default_nettype none

module dwc #(
    parameter integer IN_N  = 8,    // elements per input beat
    parameter integer OUT_N = 2,    // elements per output beat
    parameter integer E     = 4,    // element width
    parameter integer N     = 16,   // elements per sample (IN_N and OUT_N divide it)
    parameter integer TAG_W = 8
) (
    input  wire                 clk,
    input  wire                 rst,       // synchronous, active high

    input  wire [IN_N*E-1:0]    s_tdata,
    input  wire                 s_tvalid,
    output wire                 s_tready,
    input  wire [TAG_W-1:0]     s_tuser,
    input  wire                 s_tlast,

    output wire [OUT_N*E-1:0]   m_tdata,
    output wire                 m_tvalid,
    input  wire                 m_tready,
    output wire [TAG_W-1:0]     m_tuser,
    output wire                 m_tlast
);
    localparam integer SPLIT  = (IN_N > OUT_N) ? 1 : 0;
    localparam integer R      = (SPLIT != 0) ? IN_N / OUT_N : OUT_N / IN_N;
    localparam integer K_W    = (R > 1) ? $clog2(R) : 1;
    localparam integer LAST_K = R - 1;

    generate
        if ((SPLIT != 0 && IN_N % OUT_N != 0) || (SPLIT == 0 && OUT_N % IN_N != 0)
                || N % IN_N != 0 || N % OUT_N != 0) begin : g_bad_widths
            dwc_one_of_IN_N_OUT_N_must_divide_the_other_and_both_divide_N u_error ();
        end
    endgenerate

    generate
        if (R == 1) begin : g_equal
            assign m_tdata  = s_tdata;
            assign m_tvalid = s_tvalid;
            assign s_tready = m_tready;
            assign m_tuser  = s_tuser;
            assign m_tlast  = s_tlast;
            wire unused_clk = &{1'b0, clk, rst};
        end else if (SPLIT != 0) begin : g_split
            reg [IN_N*E-1:0] h;
            reg [TAG_W-1:0]  h_tag;
            reg              h_last;
            reg              full;
            reg [K_W-1:0]    k;
            wire             last_k = (k == LAST_K[K_W-1:0]);
            wire             m_fire = full && m_tready;
            assign s_tready = !full || (m_tready && last_k);
            always @(posedge clk) begin
                if (s_tvalid && s_tready) begin
                    h      <= s_tdata;
                    h_tag  <= s_tuser;
                    h_last <= s_tlast;
                end
                if (rst) begin
                    full <= 1'b0;
                    k    <= {K_W{1'b0}};
                end else begin
                    if (m_fire) begin
                        k <= last_k ? {K_W{1'b0}} : k + 1'b1;
                    end
                    if (s_tvalid && s_tready) begin
                        full <= 1'b1;
                    end else if (m_fire && last_k) begin
                        full <= 1'b0;
                    end
                end
            end
            // slice k of the held beat
            wire [OUT_N*E-1:0] slices [0:R-1];
            genvar j;
            for (j = 0; j < R; j = j + 1) begin : g_slice
                assign slices[j] = h[j*OUT_N*E +: OUT_N*E];
            end
            if (R == (1 << K_W)) begin : g_pow2
                assign m_tdata = slices[k];
            end else begin : g_npow2
                // k < R always; the mux index is clamped so that no out-of-range read exists
                wire [K_W-1:0] ks = (k > LAST_K[K_W-1:0]) ? LAST_K[K_W-1:0] : k;
                assign m_tdata = slices[ks];
            end
            assign m_tvalid = full;
            assign m_tuser  = h_tag;
            assign m_tlast  = h_last && last_k;
        end else begin : g_gather
            reg [OUT_N*E-1:0] g;
            reg [TAG_W-1:0]   g_tag;
            reg               g_last;
            reg               full;
            reg [K_W-1:0]     k;
            wire              last_k = (k == LAST_K[K_W-1:0]);
            wire              s_fire;
            assign s_tready = !full || m_tready;
            assign s_fire   = s_tvalid && s_tready;
            always @(posedge clk) begin
                if (s_fire) begin
                    g <= {s_tdata, g[OUT_N*E-1:IN_N*E]};
                end
                if (s_fire && last_k) begin
                    g_tag  <= s_tuser;
                    g_last <= s_tlast;
                end
                if (rst) begin
                    full <= 1'b0;
                    k    <= {K_W{1'b0}};
                end else begin
                    if (s_fire) begin
                        k <= last_k ? {K_W{1'b0}} : k + 1'b1;
                    end
                    if (s_fire && last_k) begin
                        full <= 1'b1;
                    end else if (m_tready) begin
                        full <= 1'b0;
                    end
                end
            end
            assign m_tdata  = g;
            assign m_tvalid = full;
            assign m_tuser  = g_tag;
            assign m_tlast  = g_last;
        end
    endgenerate
endmodule

`default_nettype wire
