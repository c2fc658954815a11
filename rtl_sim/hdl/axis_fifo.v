// axis_fifo: AXI-Stream FIFO with a registered, first-word-fall-through output.
//
// Structure: an output register (1 beat) backed by a RAM of DEPTH-1 beats (LUTRAM-friendly:
// synchronous write, asynchronous read, no reset on the array). Total capacity is DEPTH beats.
// When the RAM is empty and the output register is free (or being emptied), an input beat goes
// straight into the output register, so:
//   - latency: a beat accepted on clock edge n is on m_* right after edge n (1 cycle);
//   - throughput: 1 beat per cycle with no backpressure (and whenever the FIFO is not full);
//   - s_tready is a register-only function (RAM occupancy): no combinational path from
//     m_tready to s_tready.
// count = number of beats held (output register + RAM), 0..DEPTH.
`default_nettype none

module axis_fifo #(
    parameter integer W     = 8,   // tdata width
    parameter integer TAG_W = 8,   // tuser (sample tag) width
    parameter integer DEPTH = 4    // capacity in beats, >= 2 (any integer)
) (
    input  wire                 clk,
    input  wire                 rst,       // synchronous, active high

    input  wire                 s_tvalid,
    output wire                 s_tready,
    input  wire [W-1:0]         s_tdata,
    input  wire [TAG_W-1:0]     s_tuser,

    output wire                 m_tvalid,
    input  wire                 m_tready,
    output wire [W-1:0]         m_tdata,
    output wire [TAG_W-1:0]     m_tuser,

    output wire [CNT_W-1:0]     count
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

    localparam integer RAM_DEPTH = DEPTH - 1;
    localparam integer ADDR_W    = (clog2(RAM_DEPTH) < 1) ? 1 : clog2(RAM_DEPTH);
    localparam integer RCNT_W    = clog2(RAM_DEPTH + 1) < 1 ? 1 : clog2(RAM_DEPTH + 1);
    localparam integer CNT_W     = clog2(DEPTH + 1);
    localparam integer BEAT_W    = W + TAG_W;

    // The RAM behind the output register.
    reg  [BEAT_W-1:0] mem [0:RAM_DEPTH-1];
    reg  [ADDR_W-1:0] wr_ptr;
    reg  [ADDR_W-1:0] rd_ptr;
    reg  [RCNT_W-1:0] ram_count;

    // The output register.
    reg               out_valid;
    reg  [BEAT_W-1:0] out_beat;

    wire ram_empty  = (ram_count == {RCNT_W{1'b0}});
    wire ram_full   = (ram_count == RAM_DEPTH[RCNT_W-1:0]);
    wire in_fire    = s_tvalid && !ram_full;
    wire out_load   = !out_valid || m_tready;      // output register takes a beat this cycle
    wire ram_read   = out_load && !ram_empty;      // ... from the RAM head
    wire bypass     = out_load && ram_empty;       // ... straight from the input (if any)
    wire ram_write  = in_fire && !bypass;

    assign s_tready = !ram_full;
    assign m_tvalid = out_valid;
    assign m_tdata  = out_beat[BEAT_W-1:TAG_W];
    assign m_tuser  = out_beat[TAG_W-1:0];
    assign count    = {{(CNT_W-1){1'b0}}, out_valid} + {{(CNT_W-RCNT_W){1'b0}}, ram_count};

    always @(posedge clk) begin
        if (ram_write)
            mem[wr_ptr] <= {s_tdata, s_tuser};
    end

    always @(posedge clk) begin
        if (rst) begin
            wr_ptr    <= {ADDR_W{1'b0}};
            rd_ptr    <= {ADDR_W{1'b0}};
            ram_count <= {RCNT_W{1'b0}};
            out_valid <= 1'b0;
        end else begin
            if (ram_write)
                wr_ptr <= (wr_ptr == RAM_DEPTH[ADDR_W-1:0] - 1'b1) ? {ADDR_W{1'b0}} : wr_ptr + 1'b1;
            if (ram_read)
                rd_ptr <= (rd_ptr == RAM_DEPTH[ADDR_W-1:0] - 1'b1) ? {ADDR_W{1'b0}} : rd_ptr + 1'b1;
            if (ram_write && !ram_read)
                ram_count <= ram_count + 1'b1;
            else if (ram_read && !ram_write)
                ram_count <= ram_count - 1'b1;
            if (out_load)
                out_valid <= ram_read || in_fire;
        end
    end

    always @(posedge clk) begin
        if (ram_read)
            out_beat <= mem[rd_ptr];
        else if (bypass && in_fire)
            out_beat <= {s_tdata, s_tuser};
    end
endmodule

`default_nettype wire
