"""The HLS decision unit against eehw.policy.policies: g++ C-sim of >= 100k vectors per policy plus
ties, all-equal rows, saturated extremes and threshold edges, and the hls4ml extension layer
end to end (ONNX graph -> convert -> compile -> predict)."""

import numpy as np
import pytest

from eehw.errors import EehwError
from eehw.hw.hls.decision import CsimCase, DecisionUnit, build_testbench, run_testbench
from eehw.hw.hls.decision_layer import DECISION_DOMAIN, DECISION_OP, attach_decision, control_vector
from eehw.hw.plan import DecisionFormat
from eehw.policy.policies import EXIT_IF_AT_LEAST, PolicyName, PolicyParams, margin_score, pow2_softmax_sum

MARGIN, POW2 = PolicyName.MARGIN, PolicyName.MAX_SOFTMAX_POW2
RANDOM_VECTORS = 100_000

CASES = [
    CsimCase(DecisionUnit(DecisionFormat(MARGIN, 10, 16, 8))),
    CsimCase(DecisionUnit(DecisionFormat(POW2, 10, 16, 8), shift=0)),
    CsimCase(DecisionUnit(DecisionFormat(POW2, 10, 16, 8), shift=3)),
    CsimCase(DecisionUnit(DecisionFormat(MARGIN, 10, 16, 8)), fixed_int_bits=6),
    CsimCase(DecisionUnit(DecisionFormat(POW2, 10, 12, 6), shift=1), fixed_int_bits=4),
    CsimCase(DecisionUnit(DecisionFormat(MARGIN, 3, 8, 8))),
    CsimCase(DecisionUnit(DecisionFormat(POW2, 3, 8, 4), shift=20)),  # shift past the width
    CsimCase(DecisionUnit(DecisionFormat(MARGIN, 2, 4, 8))),
    CsimCase(DecisionUnit(DecisionFormat(POW2, 2, 4, 2), shift=0)),
    CsimCase(DecisionUnit(DecisionFormat(POW2, 16, 16, 12), shift=2)),
]


@pytest.fixture(scope="module")
def testbench():
    return build_testbench(CASES)


def reference(case, z, thresholds, enables):
    """eehw.policy.policies' score, class and exit flag for raw logits z."""
    fmt = case.unit.fmt
    if fmt.policy == MARGIN:
        score = margin_score(z)
    else:
        score = pow2_softmax_sum(z, case.unit.shift, fmt.frac_bits)
    passed = score >= thresholds if fmt.policy in EXIT_IF_AT_LEAST else score <= thresholds
    return (passed & (enables != 0)).astype(np.int64), np.argmax(z, axis=1), score


def edge_rows(rng, fmt):
    """Ties, all-equal rows and saturated extremes of the logit type."""
    c, w = fmt.num_classes, fmt.logit_w
    lo, hi = -(1 << (w - 1)), (1 << (w - 1)) - 1
    rows = [np.full(c, v) for v in (lo, hi, 0, -1, 1, lo + 1, hi - 1)]  # all equal
    for k in range(c):
        one = np.full(c, lo)
        one[k] = hi
        rows.append(one)  # one max, rest min
        rows.append(np.where(np.arange(c) == k, lo, hi))  # one min, rest max
        two = np.full(c, lo)
        two[k], two[(k + 3) % c] = hi, hi
        rows.append(two)  # tied maxima at the extreme
    rows.extend(rng.choice([lo, hi], size=(2000, c)))  # saturated mixes
    rows.extend(rng.integers(-2, 3, size=(3000, c)))  # dense ties near 0
    base = rng.integers(lo, hi + 1, size=(3000, 1))
    rows.extend(np.clip(base + rng.integers(-1, 2, size=(3000, c)), lo, hi))  # ties anywhere
    return np.array(rows, dtype=np.int64)


def threshold_edges(case, z):
    """Every row with threshold = score, score +- 1, 0 and the register maximum."""
    fmt = case.unit.fmt
    _, _, score = reference(case, z, np.zeros(len(z), np.int64), np.ones(len(z), np.int64))
    top = (1 << fmt.thr_w) - 1
    thresholds = np.concatenate([score, score - 1, score + 1, np.zeros_like(score), np.full_like(score, top)])
    return np.tile(z, (5, 1)), np.clip(thresholds, 0, top)


def check(testbench, index, z, thresholds, enables):
    case = CASES[index]
    got = run_testbench(testbench, index, case, z, thresholds, enables)
    want = reference(case, z, thresholds, enables)
    for label, g, w in zip(("exit flag", "class", "confidence"), got, want):
        bad = np.flatnonzero(g != w)
        assert bad.size == 0, (
            f"case {index}: {bad.size} {label} disagreements of {len(z)}, first "
            f"z={z[bad[0]].tolist()} thr={thresholds[bad[0]]}: {g[bad[0]]} != {w[bad[0]]}"
        )
    return len(z)


@pytest.mark.parametrize("index", range(len(CASES)))
def test_csim_matches_policy(testbench, index):
    case = CASES[index]
    fmt = case.unit.fmt
    rng = np.random.default_rng(1000 + index)
    lo, hi = -(1 << (fmt.logit_w - 1)), (1 << (fmt.logit_w - 1))
    n = RANDOM_VECTORS if fmt.num_classes == 10 and fmt.logit_w == 16 else 20_000
    z = rng.integers(lo, hi, size=(n, fmt.num_classes))
    # pow2 scores are only interesting near the max: also draw logits within a few temperatures
    if fmt.policy == POW2:
        spread = (fmt.frac_bits + 2) << min(case.unit.shift, fmt.logit_w)
        near = rng.integers(0, min(spread, hi - lo), size=(n, fmt.num_classes))
        z[n // 2 :] = hi - 1 - near[n // 2 :]
    thresholds = rng.integers(0, 1 << fmt.thr_w, size=n)
    enables = (rng.random(n) < 0.9).astype(np.int64)
    checked = check(testbench, index, z, thresholds, enables)

    edges, edge_thr = threshold_edges(case, edge_rows(rng, fmt))
    checked += check(testbench, index, edges, edge_thr, np.ones(len(edges), np.int64))
    checked += check(testbench, index, edges, edge_thr, np.zeros(len(edges), np.int64))
    assert checked >= n + 2 * 5 * 8000


def test_shared_vector_file(decision_vectors):
    """The decision unit's shared vector file (rtl_sim/models/decision_vectors.py), the rows the
    Verilog unit and the HLS top's decision IPs are driven with: every group through the header's
    C-sim, compared with the file's exit flag, class and confidence."""
    from eehw.rtl_sim.models.decision_vectors import read

    cases = read(decision_vectors)
    csim = [
        CsimCase(DecisionUnit(DecisionFormat(PolicyName(c.policy), c.classes, c.logit_bits, c.frac_bits), c.shift))
        for c in cases
    ]
    binary = build_testbench(csim)
    checked = 0
    for index, (case, vec) in enumerate(zip(csim, cases)):
        assert case.unit.fmt.thr_w == vec.thr_bits
        for g in vec.groups:
            n = len(g.z)
            got = run_testbench(binary, index, case, g.z, np.full(n, g.threshold), np.full(n, g.enable))
            for label, have, want in zip(("exit flag", "class", "confidence"), got, (g.exit, g.cls, g.conf)):
                bad = np.flatnonzero(have != want)
                assert bad.size == 0, f"{vec.key} thr={g.threshold} en={g.enable}: {bad.size} {label} disagreements"
            checked += n
    assert checked > 5000


def test_exhaustive_tiny_logits(testbench):
    """Every pair of 4-bit logits with every threshold (margin and pow2, 2 classes)."""
    values = np.arange(-8, 8)
    z = np.array(np.meshgrid(values, values)).reshape(2, -1).T
    for index in (7, 8):
        top = 1 << CASES[index].unit.fmt.thr_w
        zz = np.repeat(z, top, axis=0)
        thr = np.tile(np.arange(top), len(z))
        check(testbench, index, zz, thr, np.ones(len(zz), np.int64))


def test_control_vector():
    fmt = DecisionFormat(MARGIN, 10, 16, 8)
    assert control_vector(None, fmt) == (0, 0)
    assert control_vector(5, fmt) == (5, 1)
    assert control_vector((1 << 17) - 1, fmt) == ((1 << 17) - 1, 1)
    with pytest.raises(EehwError, match="17-bit register"):
        control_vector(1 << 17, fmt)
    with pytest.raises(EehwError, match="non-negative"):
        control_vector(-1, fmt)


def test_unsupported_policy_is_refused():
    with pytest.raises(EehwError, match="no hardware decision unit"):
        DecisionUnit(DecisionFormat(PolicyName.ENTROPY, 10, 16, 8))


# ---------------------------------------------------------------------------------------------
# hls4ml Extension API, end to end


def logits_head(num_classes):
    """The smallest head: its input is the logits (an Identity, which hls4ml skips)."""
    from onnx import TensorProto, helper
    from qonnx.core.modelwrapper import ModelWrapper

    inp = helper.make_tensor_value_info("head_in", TensorProto.FLOAT, [1, num_classes])
    out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, num_classes])
    graph = helper.make_graph(
        [helper.make_node("Identity", ["head_in"], ["logits"], name="head")], "head", [inp], [out]
    )
    return ModelWrapper(helper.make_model(graph))


def test_attach_decision_graph():
    model = attach_decision(
        logits_head(10), "max_softmax_pow2", PolicyParams("max_softmax_pow2", shifts=(3, 1), frac_bits=6), 1
    )
    node = model.graph.node[-1]
    assert (node.op_type, node.domain) == (DECISION_OP, DECISION_DOMAIN)
    assert list(node.input) == ["logits", "exit1_ctrl"]
    assert [o.name for o in model.graph.output] == ["exit1_decision"]
    attrs = {a.name: a for a in node.attribute}
    assert attrs["policy"].s == b"max_softmax_pow2"
    assert (attrs["shift"].i, attrs["frac_bits"].i, attrs["exit_index"].i) == (1, 6, 1)
    assert model.get_tensor_shape("exit1_ctrl") == [1, 2]
    with pytest.raises(EehwError, match="attach it once"):
        attach_decision(model, "max_softmax_pow2", None, 1)
    with pytest.raises(EehwError, match="params for 'margin'"):
        attach_decision(logits_head(10), "max_softmax_pow2", PolicyParams("margin"), 0)


@pytest.mark.slow
@pytest.mark.parametrize(
    "policy, precision, shift, io_type",
    [
        ("margin", "ap_int<12>", 0, "io_parallel"),
        ("max_softmax_pow2", "ap_fixed<10,3>", 2, "io_parallel"),
        ("max_softmax_pow2", "ap_int<9>", 1, "io_stream"),
    ],
)
def test_hls4ml_extension_end_to_end(tmp_path, policy, precision, shift, io_type):
    import hls4ml

    from eehw.hw.hls.decision_layer import register_extension

    num_classes, width, n = 10, int(precision.split("<")[1].split(",")[0].rstrip(">")), 3000
    params = PolicyParams(policy, shifts=(shift,), frac_bits=5)
    model = attach_decision(logits_head(num_classes), policy, params, 0)
    register_extension()
    hls_model = hls4ml.converters.convert_from_onnx_model(
        model.model,
        output_dir=str(tmp_path / f"{policy}_{io_type}"),
        backend="Vitis",
        part="xc7z020clg400-1",
        io_type=io_type,
        hls_config={
            "Model": {"Precision": "ap_fixed<16,6>", "ReuseFactor": 1},
            "LayerName": {"head_in": {"Precision": precision}},
        },
    )
    hls_model.compile()

    rng = np.random.default_rng(7)
    z = rng.integers(-(1 << (width - 1)), 1 << (width - 1), size=(n, num_classes))
    z[: n // 3] = (1 << (width - 1)) - 1 - rng.integers(0, 24, size=(n // 3, num_classes))  # close calls
    z[n // 3 : n // 2] = rng.integers(-2, 2, size=(n // 2 - n // 3, num_classes))  # ties
    fmt = DecisionFormat(PolicyName(policy), num_classes, width, 5)
    thresholds = rng.integers(0, 1 << fmt.thr_w, size=n)
    enables = (rng.random(n) < 0.8).astype(np.int64)
    frac = width - int(precision.split(",")[1].rstrip(">")) if "fixed" in precision else 0
    ctrl = np.stack([thresholds, enables], axis=1).astype(np.float64)
    y = hls_model.predict([np.ascontiguousarray(z * 2.0**-frac), np.ascontiguousarray(ctrl)])
    y = np.asarray(y).reshape(n, 3)

    score = margin_score(z) if policy == "margin" else pow2_softmax_sum(z, shift, 5)
    passed = score >= thresholds if policy == "margin" else score <= thresholds
    np.testing.assert_array_equal(y[:, 0], passed & (enables == 1))
    np.testing.assert_array_equal(y[:, 1], np.argmax(z, axis=1))
    np.testing.assert_array_equal(y[:, 2], score)


@pytest.mark.slow
def test_csim_decides_like_policies_on_trained_logits():
    """The shipped digits MLP: every exit's golden logits through the C-sim decision units, the
    first exiting unit's class against eehw.policy.policies.decide on the whole test set."""
    from eehw import flow
    from eehw.policy.policies import calibrate_shift, decide, exit_scores

    design = flow.run("digits_mlp", stop_after="golden")
    golden = design.golden
    z_list = golden.forward(design.data.x_test)
    widths = {golden.heads[k].out_bits for k in golden.exits}
    assert len(widths) == 1
    for policy in ("margin", "max_softmax_pow2"):
        y = design.data.y_test
        params = PolicyParams(policy, shifts=tuple(calibrate_shift(z, y, 8) for z in z_list), frac_bits=8)
        scores = exit_scores(params, z_list, golden.logit_exps)
        thresholds = [int(np.median(s)) for s in scores[:-1]]
        thresholds[0] = None if len(thresholds) > 2 else thresholds[0]  # one disabled exit
        fmt = DecisionFormat(PolicyName(policy), golden.num_classes, max(widths), 8)
        cases = [CsimCase(DecisionUnit(fmt, params.shift(k))) for k in range(len(z_list))]
        binary = build_testbench(cases)
        n = len(z_list[0])
        flags, classes = [], []
        for k, z in enumerate(z_list):
            final = k == len(z_list) - 1
            thr = fmt.always_exit if final else (thresholds[k] if thresholds[k] is not None else 0)
            en = 1 if final or thresholds[k] is not None else 0
            e, c, _ = run_testbench(binary, k, cases[k], z, np.full(n, thr), np.full(n, en))
            flags.append(e)
            classes.append(c)
        flags, classes = np.array(flags), np.array(classes)
        exit_index = np.argmax(flags, axis=0)
        want_exit, want_class = decide(params, z_list, golden.logit_exps, thresholds)
        np.testing.assert_array_equal(exit_index, want_exit)
        np.testing.assert_array_equal(classes[exit_index, np.arange(n)], want_class)
        assert 0 < (want_exit < len(z_list) - 1).mean() < 1, (policy, thresholds, np.bincount(want_exit))


def test_qonnx_executes_and_cleans_the_decision_node():
    """qonnx finds the custom op by its domain: shape inference through cleanup, execution equal
    to eehw.policy.policies (a head whose Quant has scale 2^-3, so logits are read as z * 2^3)."""
    from onnx import TensorProto, helper
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.util.cleanup import cleanup_model

    inp = helper.make_tensor_value_info("head_in", TensorProto.FLOAT, [1, 6])
    out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 6])
    quant = helper.make_node(
        "Quant",
        ["head_in", "scale", "zero", "bits"],
        ["logits"],
        domain="qonnx.custom_op.general",
        signed=1,
        narrow=0,
        rounding_mode="ROUND",
    )
    graph = helper.make_graph(
        [quant],
        "head",
        [inp],
        [out],
        initializer=[
            helper.make_tensor("scale", TensorProto.FLOAT, [], [0.125]),
            helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
            helper.make_tensor("bits", TensorProto.FLOAT, [], [8.0]),
        ],
    )
    model = attach_decision(ModelWrapper(helper.make_model(graph)), "margin", None, 0)
    assert {a.name: a.i for a in model.graph.node[-1].attribute}["logit_frac_bits"] == 3
    model = cleanup_model(model)
    assert model.get_tensor_shape(model.graph.output[0].name) == [1, 3]
    names = [i.name for i in model.graph.input]
    rng = np.random.default_rng(5)
    z = rng.integers(-128, 128, size=(150, 6))
    z[:20, :2] = 100  # ties
    thresholds = rng.integers(0, 300, size=150)
    for row, thr in zip(z, thresholds):
        got = execute_onnx(
            model, {names[0]: (row / 8.0).astype(np.float32)[None], names[1]: np.array([[thr, 1]], np.float32)}
        )[model.graph.output[0].name]
        score = margin_score(row[None])[0]
        assert got.tolist() == [[float(score >= thr), float(np.argmax(row)), float(score)]]


@pytest.mark.slow
def test_decision_on_a_trained_brevitas_head(tiny_config, tmp_path):
    """A real exit head (Brevitas -> QONNX through eehw.hw.hls.build) with the decision node appended is one
    hls4ml project: its C-sim on every test sample equals eehw.policy.policies on the golden logits."""
    import hls4ml

    from eehw import flow
    from eehw.hw.hls import build as hls
    from eehw.hw.hls.decision_layer import register_extension

    design = flow.run(str(tiny_config()), stop_after="golden")
    golden, model = design.golden, design.trained.model
    k = golden.exits[0]
    head = golden.heads[k]
    features = design.data.x_test
    for block in golden.blocks[: k + 1]:
        features = block(features)
    z = head(features)
    in_type = hls.FixedType.of_quant(head.ops[0])
    register_extension()
    for policy in ("margin", "max_softmax_pow2"):
        params = PolicyParams(policy, shifts=(3,) * len(golden.exits))
        graph = attach_decision(hls.export_block(model.heads[str(k)], head), policy, params, 0)
        config = hls.hls_config(graph, in_type, hls.HlsSettings(), "Vitis")
        hls_model = hls4ml.converters.convert_from_onnx_model(
            graph.model,
            output_dir=str(tmp_path / policy),
            backend="Vitis",
            part="xc7z020clg400-1",
            io_type="io_parallel",
            hls_config=config,
        )
        hls_model.compile()
        score = margin_score(z) if policy == "margin" else pow2_softmax_sum(z, 3, 8)
        thr = np.full(len(z), int(np.median(score)))
        ctrl = np.stack([thr, np.ones(len(z))], axis=1)
        x = (features * 2.0 ** golden.blocks[k].out_exp).astype(np.float64)
        y = np.asarray(hls_model.predict([np.ascontiguousarray(x), ctrl])).reshape(len(z), 3)
        passed = score >= thr if policy == "margin" else score <= thr
        np.testing.assert_array_equal(y[:, 0], passed)
        np.testing.assert_array_equal(y[:, 1], np.argmax(z, axis=1))
        np.testing.assert_array_equal(y[:, 2], score)
