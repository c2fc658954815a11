// nnet_eehw_decision.h: the early-exit confidence decision unit in HLS C++ (design.md section 3).
//
// Bit-exact with eehw/policies.py and rtl_sim/hdl/decision_unit.v:
//   policy 0 (margin):            conf = top1 - top2 (top2: second largest of the multiset, so
//                                 equal maxima give 0); exit = enable && conf >= threshold.
//   policy 1 (max_softmax_pow2):  conf = sum_i (2^F >> min((top1 - z_i) >> SHIFT, F + 1));
//                                 exit = enable && conf <= threshold.
//   class = the lowest index among the maxima (np.argmax).
// Division-free: a top-2 comparison tree, one subtraction (margin) or N shifts and an adder tree
// (pow2). The threshold and the enable bit are run-time arguments, so one bitstream serves every
// accuracy/latency target (an AXI-Lite register in the top).
//
// Logits are read as raw two's-complement bits: ap_int<W> and ap_fixed<W, I> of the same width give
// the same decision, as the policies work on integer logits (real value = z * 2^scale).
//
// Two entry points:
//   eehw_decide<CONFIG_T>(z, threshold, enable, exit, class, conf)    the core, on raw logits;
//   eehw_decision<input_T, ctrl_T, res_T, CONFIG_T>(logits, ctrl, res) the hls4ml layer
//       (EarlyExitDecision): ctrl = {threshold, enable}, res = {exit, class, conf}.
#ifndef NNET_EEHW_DECISION_H_
#define NNET_EEHW_DECISION_H_

#include "ap_int.h"
#include "hls_stream.h"

namespace nnet {

struct eehw_decision_config {
    static const unsigned n_classes = 10;
    static const unsigned logit_width = 16;
    static const unsigned policy = 0;      // 0 = margin, 1 = max_softmax_pow2
    static const unsigned shift = 0;       // pow2: right shift of (top1 - z_i)
    static const unsigned frac_bits = 8;   // pow2: F, the max term is 2^F
    static const unsigned levels = 4;      // clog2(n_classes): the top-2 tree's depth
    static const unsigned class_width = 4; // max(1, clog2(n_classes))
    static const unsigned conf_width = 17; // margin: logit_width + 1; pow2: F + bitlength(n_classes)
    static const unsigned thr_width = 17;  // threshold register width (= conf_width)
};

// One node of the top-2 tree: the largest logit, its index and the second largest.
template <class CONFIG_T> struct eehw_top2_node {
    ap_int<CONFIG_T::logit_width> top1;
    ap_int<CONFIG_T::logit_width> top2;
    ap_uint<CONFIG_T::class_width> idx;
};

// Merges two adjacent subtrees; `a` covers the lower indices, so a tie keeps a (lowest index wins).
template <class CONFIG_T>
eehw_top2_node<CONFIG_T> eehw_top2_merge(const eehw_top2_node<CONFIG_T> &a, const eehw_top2_node<CONFIG_T> &b) {
    #pragma HLS INLINE
    eehw_top2_node<CONFIG_T> m;
    const bool b_wins = b.top1 > a.top1;
    m.top1 = b_wins ? b.top1 : a.top1;
    m.idx = b_wins ? b.idx : a.idx;
    // the loser's maximum competes with the winner's second
    const ap_int<CONFIG_T::logit_width> c1 = b_wins ? a.top1 : b.top1;
    const ap_int<CONFIG_T::logit_width> c2 = b_wins ? b.top2 : a.top2;
    m.top2 = (c1 > c2) ? c1 : c2;
    return m;
}

template <class CONFIG_T>
void eehw_decide(const ap_int<CONFIG_T::logit_width> z[CONFIG_T::n_classes], ap_uint<CONFIG_T::thr_width> threshold,
                 bool enable, bool &exit_flag, ap_uint<CONFIG_T::class_width> &cls,
                 ap_uint<CONFIG_T::conf_width> &conf) {
    #pragma HLS INLINE
    const unsigned N = CONFIG_T::n_classes;
    const unsigned W = CONFIG_T::logit_width;
    const unsigned F = CONFIG_T::frac_bits;

    // Top-2 tree, clog2(N) levels; a leaf's second is the most negative value, never above a real one.
    ap_int<W> most_negative = 0;
    most_negative[W - 1] = 1;
    eehw_top2_node<CONFIG_T> node[N];
    #pragma HLS ARRAY_PARTITION variable = node complete
TreeLeaves:
    for (unsigned i = 0; i < N; i++) {
        #pragma HLS UNROLL
        node[i].top1 = z[i];
        node[i].top2 = most_negative;
        node[i].idx = i;
    }
TreeLevels:
    for (unsigned level = 0; level < CONFIG_T::levels; level++) {
        #pragma HLS UNROLL
        const unsigned span = 1u << level;
    TreeNodes:
        for (unsigned j = 0; j < N; j++) { // merges the subtrees starting at leaves i and i + span
            #pragma HLS UNROLL
            const unsigned i = j * 2 * span;
            if (i + span < N)
                node[i] = eehw_top2_merge<CONFIG_T>(node[i], node[i + span]);
        }
    }
    const ap_int<W + 1> top1 = node[0].top1;
    cls = node[0].idx;

    bool pass;
    if (CONFIG_T::policy == 0) {
        const ap_int<W + 1> top2 = node[0].top2;
        conf = ap_uint<W + 1>(top1 - top2); // >= 0 by construction
        pass = conf >= threshold;
    } else {
        ap_uint<F + 1> max_term = 0;
        max_term[F] = 1;
        ap_uint<CONFIG_T::conf_width> sum = 0;
    Pow2Terms:
        for (unsigned i = 0; i < N; i++) {
            #pragma HLS UNROLL
            const ap_uint<W + 1> gap = ap_uint<W + 1>(top1 - ap_int<W + 1>(z[i]));
            // a shift at or past the gap's width leaves 0 (and must not reach the C++ shift operator)
            const ap_uint<W + 1> e = (CONFIG_T::shift > W) ? ap_uint<W + 1>(0) : ap_uint<W + 1>(gap >> CONFIG_T::shift);
            const ap_uint<F + 1> term = (e > F) ? ap_uint<F + 1>(0) : ap_uint<F + 1>(max_term >> e.to_uint());
            sum += term;
        }
        conf = sum;
        pass = conf <= threshold;
    }
    exit_flag = enable && pass;
}

// The raw bits of one logit, whatever its ap_int/ap_fixed type.
template <class input_T, unsigned W> ap_int<W> eehw_raw_bits(const input_T &x) {
    #pragma HLS INLINE
    ap_int<W> r;
    r.range(W - 1, 0) = x.range(W - 1, 0);
    return r;
}

// hls4ml layer EarlyExitDecision (io_parallel): res = {exit flag, class, confidence}.
template <class input_T, class ctrl_T, class res_T, typename CONFIG_T>
void eehw_decision(const input_T logits[CONFIG_T::n_classes], const ctrl_T ctrl[2], res_T res[3]) {
    #pragma HLS INLINE
    ap_int<CONFIG_T::logit_width> z[CONFIG_T::n_classes];
    #pragma HLS ARRAY_PARTITION variable = z complete
RawLogits:
    for (unsigned i = 0; i < CONFIG_T::n_classes; i++) {
        #pragma HLS UNROLL
        z[i] = eehw_raw_bits<input_T, CONFIG_T::logit_width>(logits[i]);
    }
    bool exit_flag;
    ap_uint<CONFIG_T::class_width> cls;
    ap_uint<CONFIG_T::conf_width> conf;
    eehw_decide<CONFIG_T>(z, ap_uint<CONFIG_T::thr_width>(ctrl[0]), ctrl[1] != 0, exit_flag, cls, conf);
    res[0] = exit_flag;
    res[1] = cls;
    res[2] = conf;
}

// hls4ml layer EarlyExitDecision (io_stream): one beat of logits and one of {threshold, enable} in,
// one beat of {exit flag, class, confidence} out, per sample.
template <class input_T, class ctrl_T, class res_T, typename CONFIG_T>
void eehw_decision(hls::stream<input_T> &logits, hls::stream<ctrl_T> &ctrl, hls::stream<res_T> &res) {
    #pragma HLS PIPELINE II=1
    const input_T in = logits.read();
    const ctrl_T c = ctrl.read();
    typename input_T::value_type flat[CONFIG_T::n_classes];
    #pragma HLS ARRAY_PARTITION variable = flat complete
StreamLogits:
    for (unsigned i = 0; i < CONFIG_T::n_classes; i++) {
        #pragma HLS UNROLL
        flat[i] = in[i];
    }
    typename ctrl_T::value_type ctrl_flat[2] = {c[0], c[1]};
    typename res_T::value_type out_flat[3];
    eehw_decision<typename input_T::value_type, typename ctrl_T::value_type, typename res_T::value_type, CONFIG_T>(
        flat, ctrl_flat, out_flat);
    res_T out;
    out[0] = out_flat[0];
    out[1] = out_flat[1];
    out[2] = out_flat[2];
    res.write(out);
}

} // namespace nnet

#endif
