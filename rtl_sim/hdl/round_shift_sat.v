// round_shift_sat: requantise one signed integer (combinational).
//
//   y = clamp(round_half_even(x * 2^-SHIFT), OUT_MIN, OUT_MAX)
//
// which is eehw.golden.Quant applied to an integer input (shift_round_half_even, then clip):
//   SHIFT > 0: floor = x >>> SHIFT, rem = x[SHIFT-1:0], half = 2^(SHIFT-1);
//              round up iff rem > half, or rem == half and floor is odd (ties to even);
//   SHIFT = 0: identity;
//   SHIFT < 0: exact left shift by -SHIFT (internal width grows, nothing is lost).
// The input is always read as signed: an unsigned source zero-extends by one bit first.
// The result is saturated to [OUT_MIN, OUT_MAX] (compared at full width, so any clamp range
// is exact) and presented as OUT_W bits, two's complement when OUT_SIGNED. ReLU is OUT_MIN = 0.
`default_nettype none

module round_shift_sat #(
    parameter integer IN_W       = 16,   // input width (signed)
    parameter integer SHIFT      = 4,    // right shift; negative = left shift
    parameter integer OUT_W      = 8,    // output width
    parameter integer OUT_SIGNED = 1,    // 1: signed output, 0: unsigned (documentation + check)
    parameter integer OUT_MIN    = -128, // clamp range, must fit OUT_W / OUT_SIGNED
    parameter integer OUT_MAX    = 127
) (
    input  wire [IN_W-1:0]  in,
    output wire [OUT_W-1:0] out
);
    // Width of the rounded (or left-shifted) value before saturation.
    localparam integer LSH  = (SHIFT < 0) ? -SHIFT : 0;
    localparam integer RSH  = (SHIFT > 0) ? SHIFT : 0;
    localparam integer X_W  = (IN_W > RSH) ? IN_W : RSH + 1;   // room for floor's sign
    localparam integer R_W  = X_W + LSH;
    // Comparison width: holds R_W-bit values and any 32-bit clamp constant.
    localparam integer C_W  = ((R_W > 32) ? R_W : 32) + 1;
    // Clamp range of the output format, to refuse an OUT_MIN/OUT_MAX that cannot be represented.
    localparam integer FMT_MIN = (OUT_SIGNED != 0) ? -(1 << (OUT_W - 1)) : 0;
    localparam integer FMT_MAX = (OUT_SIGNED != 0) ? (1 << (OUT_W - 1)) - 1 : (1 << OUT_W) - 1;
    localparam integer RANGE_OK = ((OUT_MIN <= OUT_MAX) && (OUT_W >= 31 || (OUT_MIN >= FMT_MIN && OUT_MAX <= FMT_MAX))) ? 1 : 0;

    generate
        if (RANGE_OK == 0) begin : g_bad_range
            // Elaboration-time error: instantiating a missing module names the problem.
            round_shift_sat_OUT_MIN_OUT_MAX_do_not_fit_OUT_W u_error ();
        end
    endgenerate

    wire signed [X_W-1:0] x = $signed({{(X_W - IN_W + 1){in[IN_W-1]}}, in[IN_W-2:0]});
    wire signed [R_W-1:0] r;

    generate
        if (SHIFT > 0) begin : g_right
            wire signed [X_W-1:0] floor_v = x >>> RSH;
            // guard = bit SHIFT-1, sticky = OR of bits below it (a 0 is appended so SHIFT = 1 works)
            wire [RSH:0] rem_ext = {x[RSH-1:0], 1'b0};
            wire guard  = rem_ext[RSH];
            wire sticky = |rem_ext[RSH-1:0];
            wire up     = guard & (sticky | floor_v[0]);
            // floor <= (2^(X_W-1)-1) >> SHIFT, so floor + 1 cannot overflow X_W bits.
            assign r = floor_v + $signed({{(X_W - 1){1'b0}}, up});
        end else if (SHIFT < 0) begin : g_left
            assign r = $signed({x, {LSH{1'b0}}});
        end else begin : g_none
            assign r = x;
        end
    endgenerate

    wire signed [C_W-1:0] rc     = $signed({{(C_W - R_W){r[R_W-1]}}, r});
    wire signed [C_W-1:0] lo     = $signed({{(C_W - 32){OUT_MIN < 0}}, OUT_MIN[31:0]});
    wire signed [C_W-1:0] hi     = $signed({{(C_W - 32){OUT_MAX < 0}}, OUT_MAX[31:0]});
    wire signed [C_W-1:0] y      = (rc < lo) ? lo : (rc > hi) ? hi : rc;

    assign out = y[OUT_W-1:0];

    // Bits of y above OUT_W are implied by the clamp range.
    wire unused_y = &{1'b0, y[C_W-1:OUT_W]};
endmodule

`default_nettype wire
