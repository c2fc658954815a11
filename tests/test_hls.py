"""hls4ml projects per block: C-sim chain vs the golden integer model, project contents, cache, errors.

The reference is the golden model (eehw.model.golden), run block by block here; the layouts it is
compared in are written out in this file (channels-last = np.moveaxis(x, 1, -1)).
"""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
import torch
from brevitas.nn import QuantIdentity, QuantLinear
from brevitas.quant import Int8ActPerTensorFixedPoint, Int8WeightPerTensorFixedPoint, Int16Bias
from torch import nn

from eehw import flow
from eehw.board import load_board
from eehw.errors import EehwError
from eehw.hw.hls.build import build_hls_projects
from eehw.hw.hls.chain import chain_check, chain_outputs, run_chain
from eehw.hw.hls.qonnx_export import export_block
from eehw.hw.hls.settings import HlsBlock, HlsSettings, settings_from_plan
from eehw.hw.plan import plan_design
from eehw.hw.stages import Folding
from eehw.model.golden import IntBlock
from eehw.paths import build_dir, cache_dir

BOARD = "pynq-z2"


def _flow_settings(design, foldings=None):
    """What `eehw synth` builds: io_stream, reuse factors from the RTL plan's SIMD x PE."""
    hw = design.cfg.hardware
    plan = plan_design(design.golden, design.cfg.name, None, foldings or {}, hw.max_simd, hw.max_pe)
    return plan, settings_from_plan(design.golden, plan)


def _build(name: str):
    design = flow.run(name, stop_after="golden")
    board = load_board(BOARD)
    start = time.perf_counter()
    projects = build_hls_projects(
        design.trained, design.golden, board, build_dir() / BOARD / name, settings=_flow_settings(design)[1]
    )
    seconds = time.perf_counter() - start
    print(f"\n{name}: {len(projects)} projects built in {seconds:.1f} s")
    for p in projects:
        print(f"  {p.name}: convert {p.convert_seconds:.2f} s, compile {p.compile_seconds:.2f} s, cached {p.cached}")
    return design, projects


@pytest.fixture(scope="module")
def digits_mlp():
    return _build("digits_mlp")


@pytest.fixture(scope="module")
def digits_cnn():
    return _build("digits_cnn")


@pytest.fixture(scope="module")
def mnist1d_cnn():
    return _build("mnist1d_cnn")


def _channels_last(x: np.ndarray) -> np.ndarray:
    return np.moveaxis(x, 1, -1) if x.ndim > 2 else x


def _assert_chain_bit_exact(design, projects):
    golden, x = design.golden, design.data.x_test
    outs = chain_outputs(projects, golden, x)
    mismatches = {}
    h = x
    for k, block in enumerate(golden.blocks):
        h = block(h)  # golden, fed golden: equal C-sim outputs at every block also prove the chain
        want = _channels_last(h).reshape(len(x), -1)
        mismatches[block.name] = int(np.any(outs[block.name].reshape(len(x), -1) != want, axis=1).sum())
        if k in golden.heads:
            head = golden.heads[k]
            got = outs[head.name].reshape(len(x), -1)
            mismatches[head.name] = int(np.any(got != head(h).reshape(len(x), -1), axis=1).sum())
    print(f"\n{design.cfg.name}: {len(x)} test samples, mismatching samples per block: {mismatches}")
    assert mismatches == {name: 0 for name in mismatches}
    logits = run_chain(projects, golden, x)
    reference = golden.forward(x)
    assert len(logits) == len(reference) == len(golden.exits)
    for got, want in zip(logits, reference):
        assert got.dtype.kind == "i" and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    assert len(x) > 100


@pytest.mark.slow
def test_digits_mlp_chain_equals_golden(digits_mlp):
    _assert_chain_bit_exact(*digits_mlp)


@pytest.mark.slow
def test_digits_cnn_chain_equals_golden(digits_cnn):
    _assert_chain_bit_exact(*digits_cnn)


@pytest.mark.slow
def test_mnist1d_cnn_chain_equals_golden(mnist1d_cnn):
    _assert_chain_bit_exact(*mnist1d_cnn)


@pytest.mark.slow
def test_projects_are_io_stream_with_the_rtl_folding(digits_mlp):
    """Each weighted layer's ReuseFactor is IN*OUT / (SIMD*PE) of its MVU, computed here."""
    design, projects = digits_mlp
    plan, _ = _flow_settings(design)
    mvus = {
        st.name: st for part in (*plan.blocks, *plan.heads.values()) for st in part.stages if hasattr(st, "folding")
    }
    for p in projects:
        config = (p.project_dir / "hls4ml_config.yml").read_text()
        assert re.search(r"^IOType: io_stream$", config, re.M), p.name
        ops = [
            op
            for op in next(b for b in [*design.golden.blocks, *design.golden.heads.values()] if b.name == p.name).ops
            if op.name in mvus
        ]
        want = [
            op.weight.shape[0] * op.weight.shape[1] // (mvus[op.name].folding.simd * mvus[op.name].folding.pe)
            for op in ops
        ]
        assert list(p.settings.reuse_factors) == want, p.name
        # hls4ml builds a requested factor it supports as is, and moves one it cannot build to
        # the closest it can; the project records what it built.
        params = (p.project_dir / "firmware" / "parameters.h").read_text()
        assert len(p.reuse_factors) == len(want)
        for rf, asked in zip(p.reuse_factors, want):
            assert f"reuse_factor = {rf};" in params, (p.name, rf)
            assert abs(rf - asked) <= asked // 2, (p.name, rf, asked)


@pytest.mark.slow
def test_digits_cnn_folded_to_one_lane_chain_equals_golden(digits_cnn, tmp_path):
    """The deepest folding the DSE offers (SIMD = PE = 1: ReuseFactor = IN*OUT, Resource strategy)
    keeps the C-sim chain bit-exact on every test sample."""
    design, _ = digits_cnn
    layers = [
        op.name
        for b in [*design.golden.blocks, *design.golden.heads.values()]
        for op in b.ops
        if type(op).__name__ in ("Dense", "Conv")
    ]
    _, settings = _flow_settings(design, {name: Folding(1, 1) for name in layers})
    projects = build_hls_projects(design.trained, design.golden, load_board(BOARD), tmp_path, settings=settings)
    assert all(rf > 1 for p in projects for rf in p.reuse_factors)
    assert "Strategy: Resource" in (projects[0].project_dir / "hls4ml_config.yml").read_text()
    _assert_chain_bit_exact(design, projects)


def _expected_input_types(golden) -> dict[str, str]:
    """ap type of what enters every block, from the golden model's quantisers and block outputs."""

    def ap(bits, exp, signed):
        return f"ap_{'' if signed else 'u'}fixed<{bits},{bits + exp}>"

    q = golden.blocks[0].ops[0]
    types = {golden.blocks[0].name: ap(q.bits, q.out_exp, q.signed)}
    for k, block in enumerate(golden.blocks):
        out = ap(block.out_bits, block.out_exp, block.out_signed)
        if k + 1 < len(golden.blocks):
            types[golden.blocks[k + 1].name] = out
        if k in golden.heads:
            types[golden.heads[k].name] = out
    return types


def _defines(project) -> str:
    return (project.project_dir / "firmware" / "defines.h").read_text()


@pytest.mark.slow
def test_project_input_precision_is_the_brevitas_type(digits_mlp):
    design, projects = digits_mlp
    expected = _expected_input_types(design.golden)
    assert set(expected) == {p.name for p in projects}
    for p in projects:
        # io_stream: the stream's element is an nnet::array of the input type
        match = re.search(r"typedef nnet::array<(ap_u?fixed<[^>]*>), [^;]*> input_t;", _defines(p))
        assert match, f"{p.name}: no input_t in defines.h"
        assert match.group(1) == expected[p.name], p.name
        assert "fixed<16,6>" not in match.group(1)


@pytest.mark.slow
def test_project_output_precision_is_the_golden_type(digits_mlp):
    design, projects = digits_mlp
    blocks = {b.name: b for b in list(design.golden.blocks) + list(design.golden.heads.values())}
    for p in projects:
        b = blocks[p.name]
        want = f"ap_{'' if b.out_signed else 'u'}fixed<{b.out_bits},{b.out_bits + b.out_exp}"
        # The top function's output argument type (the last layer's result type)
        header = (p.project_dir / "firmware" / f"{p.project_name}.h").read_text()
        out_type = re.search(r"hls::stream<(\w+)> &\w+\s*\)", header.replace("\n", " "))
        assert out_type, header
        typedef = re.search(rf"typedef nnet::array<(ap_u?fixed<[^>]*>), [^;]*> {out_type.group(1)};", _defines(p))
        assert typedef and typedef.group(1).startswith(want), (p.name, typedef and typedef.group(1), want)


@pytest.mark.slow
def test_part_and_clock_come_from_the_board(digits_mlp):
    _, projects = digits_mlp
    board = load_board(BOARD)
    assert board.part == "xc7z020clg400-1" and board.clock_mhz == 100
    for p in projects:
        tcl = (p.project_dir / "project.tcl").read_text()
        assert f'set part "{board.part}"' in tcl
        period = re.search(r"set clock_period (\S+)", tcl).group(1)
        assert float(period) == pytest.approx(1000.0 / board.clock_mhz) == 10.0
        assert re.search(r"^Backend: Vitis$", (p.project_dir / "hls4ml_config.yml").read_text(), re.M)


@pytest.mark.slow
def test_projects_live_under_out_dir_hls_block_name(digits_mlp):
    design, projects = digits_mlp
    root = build_dir() / BOARD / design.cfg.name / "hls"
    names = [b.name for b in design.golden.blocks] + [design.golden.heads[k].name for k in design.golden.exits]
    assert sorted(p.name for p in projects) == sorted(names)
    for p in projects:
        assert p.project_dir == root / p.name
        assert (p.project_dir / p.library).is_file()
        assert not list(root.glob(".*tmp*"))


@pytest.mark.slow
def test_second_build_is_a_cache_hit(digits_mlp, monkeypatch, tmp_path):
    design, first = digits_mlp
    import hls4ml.converters

    def no_conversion(*args, **kwargs):
        raise AssertionError("hls4ml conversion ran on a cache hit")

    monkeypatch.setattr(hls4ml.converters, "convert_from_onnx_model", no_conversion)
    again = build_hls_projects(
        design.trained, design.golden, load_board(BOARD), tmp_path / "again", settings=_flow_settings(design)[1]
    )
    assert all(p.cached and p.compile_seconds == 0.0 for p in again)
    assert [p.key for p in again] == [p.key for p in first]
    for p in again:
        assert p.project_dir == tmp_path / "again" / "hls" / p.name
        assert (p.project_dir / p.library).is_file()
    # The copied, never recompiled libraries still compute the golden logits.
    x = design.data.x_test[:64]
    for got, want in zip(run_chain(again, design.golden, x), design.golden.forward(x)):
        np.testing.assert_array_equal(got, want)


def _block_1(design):
    """blocks.1 of a design as build_block takes it: its QONNX graph and its input type."""
    from eehw.hw.hls.settings import FixedType

    block, prev = design.golden.blocks[1], design.golden.blocks[0]
    in_type = FixedType(prev.out_bits, prev.out_exp, prev.out_signed)
    return block, export_block(design.trained.model.blocks[1], block), in_type


@pytest.mark.slow
def test_settings_and_vivado_backend(digits_mlp, tmp_path):
    from eehw.hw.hls.build import build_block

    design, first = digits_mlp
    block, qonnx, in_type = _block_1(design)
    project = build_block(
        block.name,
        qonnx,
        block,
        in_type,
        load_board(BOARD),
        tmp_path / block.name,
        backend="Vivado",
        settings=HlsSettings(reuse_factor=4, strategy="Resource"),
    )
    assert project.key != next(p.key for p in first if p.name == block.name)
    assert "reuse_factor = 4" in (project.project_dir / "firmware" / "parameters.h").read_text()
    config = (project.project_dir / "hls4ml_config.yml").read_text()
    assert re.search(r"^Backend: Vivado$", config, re.M) and "Strategy: Resource" in config
    # Still bit-exact: fed the golden input of blocks.1, it gives the golden output.
    golden_in = design.golden.blocks[0](design.data.x_test)
    got = project.predict(golden_in * 2.0 ** design.golden.blocks[0].out_exp) * 2.0**-block.out_exp
    np.testing.assert_array_equal(got, block(golden_in))


@pytest.mark.slow
def test_failed_compile_leaves_nothing(digits_mlp, tmp_path, monkeypatch):
    from hls4ml.backends.fpga.fpga_backend import FPGABackend

    from eehw.hw.hls.build import build_block

    def broken(self, model):
        raise Exception("g++: internal compiler error")

    monkeypatch.setattr(FPGABackend, "compile", broken)
    design, _ = digits_mlp
    block, qonnx, in_type = _block_1(design)
    before = set((cache_dir() / "hls4ml").iterdir())
    with pytest.raises(EehwError, match=r"blocks\.1: hls4ml C-sim compile \(g\+\+\) failed") as info:
        build_block(
            block.name,
            qonnx,
            block,
            in_type,
            load_board(BOARD),
            tmp_path / block.name,
            settings=HlsSettings(reuse_factor=2),
        )
    assert "\n" not in str(info.value)
    added = set((cache_dir() / "hls4ml").iterdir()) - before
    assert all(p.suffix == ".log" for p in added), added  # hls4ml's output kept, no project
    assert not (tmp_path / block.name).exists()


@pytest.mark.slow
def test_hls4ml_default_input_precision_is_refused(digits_mlp, tmp_path, monkeypatch):
    """Left to hls4ml's default fixed<16,6>, the input would be truncated: refused before compiling."""
    from eehw.hw.hls import build as hls

    original = hls.hls_config

    def default_input(model, in_type, settings, backend):
        config = original(model, in_type, settings, backend)
        config["LayerName"][model.graph.input[0].name]["Precision"]["result"] = "fixed<16,6>"
        return config

    monkeypatch.setattr(hls, "hls_config", default_input)
    design, _ = digits_mlp
    block, qonnx, in_type = _block_1(design)
    with pytest.raises(EehwError, match=r"blocks\.1: hls4ml input precision is fixed<16,6\b.*the Brevitas type"):
        hls.build_block(block.name, qonnx, block, in_type, load_board(BOARD), tmp_path / block.name)
    assert not (tmp_path / block.name).exists()


def test_bad_settings_are_one_line_errors():
    with pytest.raises(EehwError, match="reuse factors must be positive integers, got 0"):
        HlsSettings(reuse_factor=0)
    with pytest.raises(EehwError, match="reuse factors must be positive integers, got 2.5"):
        HlsSettings(reuse_factors=(1, 2.5))
    with pytest.raises(EehwError, match="strategy"):
        HlsSettings(strategy="Fast")
    with pytest.raises(EehwError, match="io_type"):
        HlsSettings(io_type="io_serial")


@pytest.mark.slow
def test_unknown_block_in_settings_is_refused(digits_mlp, tmp_path):
    design, _ = digits_mlp
    with pytest.raises(EehwError, match="blocks.9"):
        build_hls_projects(
            design.trained, design.golden, load_board(BOARD), tmp_path, settings={"blocks.9": HlsSettings()}
        )


def test_unsupported_op_is_one_line_error_naming_the_layer():
    torch.manual_seed(0)
    module = nn.Sequential(
        QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, return_quant_tensor=True),
        QuantLinear(
            8, 8, bias=True, weight_quant=Int8WeightPerTensorFixedPoint, bias_quant=Int16Bias, return_quant_tensor=False
        ),
        nn.Hardswish(),
    )
    block = IntBlock("blocks.0", (), (8,), (8,), 0, 8, True)
    with pytest.raises(EehwError) as info:
        export_block(module, block)
    message = str(info.value)
    assert "\n" not in message
    assert "blocks.0.2" in message and "HardSwish" in message


@pytest.mark.slow
def test_chain_check_is_cached_by_content(digits_mlp, monkeypatch):
    """A second check of the same projects on the same samples reads the first one's result; other
    samples run the C-sim again."""
    design, projects = digits_mlp
    x = design.data.x_test[:50]
    counts, first = chain_check(projects, design.golden, x)
    assert first is None and set(counts.values()) == {0}
    monkeypatch.setattr(HlsBlock, "predict", lambda self, x: pytest.fail("C-sim ran on a cached check"))
    assert chain_check(projects, design.golden, x) == (counts, first)
    with pytest.raises(pytest.fail.Exception, match="C-sim ran"):
        chain_check(projects, design.golden, x[:49])
