// maxpool: max pooling of a whole feature map (eehw.golden.MaxPool, window = stride = K,
// floor mode: trailing rows/columns that do not fill a window are dropped).
//
// Layout (channels-last), input: element (p, c) of the IN_H x IN_W x C map, p = h*IN_W + w, at
// s_tdata[(p*C + c)*E +: E]; output: the OUT_H x OUT_W x C pooled map in the same layout,
//   OUT_W = IN_W / K, OUT_H = IN_H / K (1-D: IN_H = 1, OUT_H = 1, window K along IN_W),
//   y(oh, ow, c) = max over kh, kw < K of x(oh*K + kh, ow*K + kw, c), compared as SIGNED or
//   unsigned E-bit integers. m_tuser = s_tuser.
//
// Timing: a comparator tree (combinational) into one pipeline register with full throughput.
//   LATENCY = 1: a beat accepted at clock edge n transfers at edge n+1 at the earliest;
//   cycles per sample = 1: s_tready = !m_tvalid || m_tready (a combinational path from m_tready).
`default_nettype none

module maxpool #(
    parameter integer DIMS   = 2,   // 1 (length IN_W, IN_H must be 1) or 2 (IN_H x IN_W)
    parameter integer C      = 8,   // channels
    parameter integer IN_H   = 8,   // input height (1 for 1-D)
    parameter integer IN_W   = 8,   // input width (the length for 1-D)
    parameter integer K      = 2,   // window and stride
    parameter integer E      = 8,   // element width
    parameter integer SIGNED = 0,   // elements signed (1) or unsigned (0)
    parameter integer TAG_W  = 8    // tuser (sample tag) width
) (
    input  wire                 clk,
    input  wire                 rst,       // synchronous, active high

    /* verilator lint_off UNUSEDSIGNAL */  // floor mode: trailing rows/columns are not read
    input  wire [IN_H*IN_W*C*E-1:0]  s_tdata,
    /* verilator lint_on UNUSEDSIGNAL */
    input  wire                      s_tvalid,
    output wire                      s_tready,
    input  wire [TAG_W-1:0]          s_tuser,

    output wire [((DIMS == 2) ? IN_H / K : 1)*(IN_W / K)*C*E-1:0] m_tdata,
    output wire                      m_tvalid,
    input  wire                      m_tready,
    output wire [TAG_W-1:0]          m_tuser
);
    localparam integer KH    = (DIMS == 2) ? K : 1;
    localparam integer OUT_W = IN_W / K;
    localparam integer OUT_H = (DIMS == 2) ? IN_H / K : 1;
    localparam integer KK    = KH * K;          // elements per window
    localparam integer NO    = OUT_H * OUT_W * C;

    wire [NO*E-1:0] y;

    // x read as signed with one extension bit (0 for unsigned inputs).
    function [E:0] ext;
        input [E-1:0] x;
        begin
            ext = {(SIGNED != 0) & x[E-1], x};
        end
    endfunction

    genvar oh, ow, c;
    generate
        for (oh = 0; oh < OUT_H; oh = oh + 1) begin : g_oh
            for (ow = 0; ow < OUT_W; ow = ow + 1) begin : g_ow
                for (c = 0; c < C; c = c + 1) begin : g_c
                    // Running maximum over the window's KK elements, k = kh*K + kw (synthesis
                    // unrolls the loop into a chain of comparators; all indices are constants).
                    reg [E-1:0] m;
                    reg [E-1:0] x;
                    integer j;
                    always @* begin
                        m = s_tdata[(((oh*KH) * IN_W + ow*K) * C + c)*E +: E];
                        for (j = 1; j < KK; j = j + 1) begin
                            x = s_tdata[(((oh*KH + j / K) * IN_W + ow*K + j % K) * C + c)*E +: E];
                            if ($signed(ext(x)) > $signed(ext(m)))
                                m = x;
                        end
                    end
                    assign y[((oh*OUT_W + ow)*C + c)*E +: E] = m;
                end
            end
        end
    endgenerate

    reg [NO*E-1:0]  data_q;
    reg [TAG_W-1:0] tag_q;
    reg             valid_q;

    wire load = !valid_q || m_tready;

    assign s_tready = load;
    assign m_tdata  = data_q;
    assign m_tvalid = valid_q;
    assign m_tuser  = tag_q;

    always @(posedge clk) begin
        if (load && s_tvalid) begin
            data_q <= y;
            tag_q  <= s_tuser;
        end
    end

    always @(posedge clk) begin
        if (rst)
            valid_q <= 1'b0;
        else if (load)
            valid_q <= s_tvalid;
    end
endmodule

`default_nettype wire
