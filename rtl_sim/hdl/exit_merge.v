// exit_merge: puts the results of K exits on one AXI-Stream output, round-robin.
//
// Input port i (0..K-1) uses s_tvalid[i], s_tready[i], s_tdata[i*DEC_W +: DEC_W] (a decision:
// bit 0 = exit flag, the rest opaque {confidence, class}) and s_tuser[i*TAG_W +: TAG_W] (tag).
// Output beat packing (OUT_W = DEC_W - 1 + IDX_W bits, IDX_W = max(1, clog2(K))):
//   m_tdata[OUT_W-1:IDX_W] = the decision without its exit bit, i.e. s_tdata[i*DEC_W+DEC_W-1 : i*DEC_W+1]
//   m_tdata[IDX_W-1:0]     = i, the exit index of the port the beat came from
//   m_tuser                = the tag, unchanged.
// Arbitration: round robin; after a beat from port i, ports i+1, i+2, ... (cyclically) have
// priority, so a waiting port is passed over at most K-1 times (no starvation). s_tready may
// depend on s_tvalid (the grant) but not on m_tready.
//
// The output is registered with a skid register behind it: a beat accepted on clock edge n is
// on m_* right after edge n (1 cycle latency); throughput is one beat per cycle in total.
`default_nettype none

module exit_merge #(
    parameter integer K     = 2,   // number of exits, 1..8
    parameter integer DEC_W = 16,  // decision width >= 2 (bit 0 = exit flag, dropped on output)
    parameter integer TAG_W = 8    // sample tag width (tuser)
) (
    input  wire                       clk,
    input  wire                       rst,       // synchronous, active high

    input  wire [K-1:0]               s_tvalid,
    output wire [K-1:0]               s_tready,
    input  wire [K*DEC_W-1:0]         s_tdata,
    input  wire [K*TAG_W-1:0]         s_tuser,

    output wire                       m_tvalid,
    input  wire                       m_tready,
    output wire [DEC_W-1+IDX_W-1:0]   m_tdata,
    output wire [TAG_W-1:0]           m_tuser
);
    function integer clog2;
        input integer value;
        integer v;
        begin
            v = value - 1;
            clog2 = 0;
            while (v > 0) begin
                clog2 = clog2 + 1;
                v = v >> 1;
            end
        end
    endfunction

    localparam integer IDX_W  = (clog2(K) < 1) ? 1 : clog2(K);
    localparam integer OUT_W  = DEC_W - 1 + IDX_W;
    localparam integer BEAT_W = OUT_W + TAG_W;
    localparam integer LAST_I = K - 1;
    localparam [IDX_W-1:0] LAST = LAST_I[IDX_W-1:0];

    reg  [IDX_W-1:0]  rr;          // port with the highest priority this cycle
    reg               grant_any;
    reg  [IDX_W-1:0]  grant;
    integer           i;
    integer           p;
    integer           j;

    // Round-robin search: the first valid port at or after rr, cyclically.
    always @* begin
        grant_any = 1'b0;
        grant     = {IDX_W{1'b0}};
        for (i = K - 1; i >= 0; i = i - 1) begin
            p = i + {{(32 - IDX_W){1'b0}}, rr};
            if (p >= K)
                p = p - K;
            if (s_tvalid[p]) begin
                grant_any = 1'b1;
                grant     = p[IDX_W-1:0];
            end
        end
    end

    reg               out_valid;
    reg  [BEAT_W-1:0] out_beat;
    reg               skid_valid;
    reg  [BEAT_W-1:0] skid_beat;

    wire              in_fire  = grant_any && !skid_valid;
    wire              out_load = !out_valid || m_tready;
    reg  [DEC_W-2:0]  in_info;     // granted decision without its exit bit
    reg  [TAG_W-1:0]  in_tag;
    wire [BEAT_W-1:0] in_beat  = {in_info, grant, in_tag};

    // Input multiplexer as a case over the grant (maps to LUT muxes, not a barrel shifter).
    always @* begin
        in_info = {(DEC_W - 1){1'b0}};
        in_tag  = {TAG_W{1'b0}};
        for (j = 0; j < K; j = j + 1) begin
            if (grant == j[IDX_W-1:0]) begin
                in_info = s_tdata[j*DEC_W + 1 +: DEC_W - 1];
                in_tag  = s_tuser[j*TAG_W +: TAG_W];
            end
        end
    end

    genvar g;
    generate
        for (g = 0; g < K; g = g + 1) begin : g_ready
            assign s_tready[g] = in_fire && (grant == g);
        end
    endgenerate

    assign m_tvalid = out_valid;
    assign m_tdata  = out_beat[BEAT_W-1:TAG_W];
    assign m_tuser  = out_beat[TAG_W-1:0];

    always @(posedge clk) begin
        if (rst) begin
            rr         <= {IDX_W{1'b0}};
            out_valid  <= 1'b0;
            skid_valid <= 1'b0;
        end else begin
            if (in_fire)
                rr <= (grant == LAST) ? {IDX_W{1'b0}} : grant + 1'b1;
            if (out_load) begin
                out_valid  <= skid_valid || in_fire;
                skid_valid <= 1'b0;
            end else if (in_fire) begin
                skid_valid <= 1'b1;
            end
        end
    end

    always @(posedge clk) begin
        if (out_load) begin
            if (skid_valid)
                out_beat <= skid_beat;
            else if (in_fire)
                out_beat <= in_beat;
        end
        if (in_fire && !out_load)
            skid_beat <= in_beat;
    end
endmodule

`default_nettype wire
