"""The multi-exit top: the generated block-design Tcl runs in tclsh (Vivado commands recorded by
stubs, so loops and procs are really evaluated), its content is checked, the register map agrees
with it, and the small IPs' C++ compiles with g++ against hls4ml's ap_types."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from eehw.board import load_board
from eehw.errors import EehwError
from eehw.hw.hls.decision import ap_types_dir, templates_dir
from eehw.hw.hls.top import Stream, TopDesign, write_hls_top
from eehw.hw.plan import DecisionFormat
from eehw.policy.policies import PolicyName

TCLSH = shutil.which("tclsh")
needs_tclsh = pytest.mark.skipif(TCLSH is None, reason="tclsh not installed (Debian: apt-get install tcl)")

# Records every Vivado command as one line of \x1f-separated words. Stubs return one list element
# naming the call, so the script's own procs (eehw_axis_pin checks llength) see what Vivado returns.
HARNESS = r"""
set eehw_calls [open [lindex $argv 1] w]
proc eehw_record {args} {
    global eehw_calls
    puts $eehw_calls [join $args "\x1f"]
}
proc unknown {args} {
    eehw_record {*}$args
    return [list "<[lindex $args 0]:[join [lrange $args 1 end] { }]>"]
}
proc get_property {args} { eehw_record get_property {*}$args; return "100%" }
rename file eehw_tcl_file
proc file {sub args} {
    if {$sub eq "copy"} { eehw_record file copy {*}$args; return }
    return [eehw_tcl_file $sub {*}$args]
}
source [lindex $argv 0]
close $eehw_calls
"""

MLP = TopDesign(
    name="digits_mlp",
    blocks=("block0", "block1", "block2", "block3"),
    outputs=(Stream(32, 8), Stream(32, 8), Stream(32, 8), Stream(32, 8)),
    input=Stream(64, 5),
    input_signed=False,
    exits=(0, 2, 3),
    heads=("head0", "head2", "head3"),
    fmt=DecisionFormat(PolicyName.MARGIN, 10, 16, 8),
)
CNN = TopDesign(
    name="digits_cnn",
    blocks=("conv0", "conv1", "conv2"),
    outputs=(Stream(8, 6, 36), Stream(16, 6, 9), Stream(16, 6, 4)),
    input=Stream(1, 8, 64),
    input_signed=True,
    exits=(1, 2),
    heads=("exit1", "exit2"),
    fmt=DecisionFormat(PolicyName.MAX_SOFTMAX_POW2, 10, 12, 6),
    shifts=(2, 0),
)


def run_tcl(tcl: Path, tmp_path: Path) -> list[list[str]]:
    harness = tmp_path / "harness.tcl"
    harness.write_text(HARNESS)
    calls = tmp_path / "calls.txt"
    done = subprocess.run([TCLSH, str(harness), str(tcl), str(calls)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [line.split("\x1f") for line in calls.read_text().splitlines()]


def stream_edges(calls) -> list[tuple[str, str, str, str]]:
    """(src cell, src port, dst cell, dst port) of every connect_bd_intf_net; '' = the only pin."""
    edges = []

    def pin(text, mode):
        text = text.removeprefix("{").removesuffix("}")  # a one-element Tcl list
        named = re.fullmatch(r"<get_bd_intf_pins:([^/ ]+)/(\S+)>", text)
        if named:
            return named.group(1), named.group(2)
        anonymous = re.fullmatch(r"<get_bd_intf_pins:-of_objects <get_bd_cells:(\S+)> -filter MODE == (\w+) .*>", text)
        assert anonymous and anonymous.group(2) == mode, text
        return anonymous.group(1), ""

    for call in calls:
        if call[0] == "connect_bd_intf_net":
            edges.append((*pin(call[1], "Master"), *pin(call[2], "Slave")))
    return edges


@pytest.fixture(params=[MLP, CNN], ids=lambda d: d.name)
def generated(request, tmp_path):
    design = request.param
    files = write_hls_top(design, load_board("pynq-z2"), tmp_path / "out")
    return design, files


@needs_tclsh
def test_tcl_runs_and_names_part_and_board(generated, tmp_path):
    design, files = generated
    calls = run_tcl(files.tcl, tmp_path)
    create = next(c for c in calls if c[0] == "create_project")
    assert create[create.index("-part") + 1] == "xc7z020clg400-1"
    assert ["set_property", "board_part", "tul.com.tw:pynq-z2:part0:1.0", "<current_project:>"] in calls
    ps7 = [c for c in calls if c[0] == "set_property" and "CONFIG.PCW_USE_S_AXI_HP0" in " ".join(c)]
    assert ps7 and "CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ 100" in " ".join(ps7[0])  # FCLK0, Tcl-evaluated
    dma = " ".join(next(c for c in calls if c[0] == "set_property" and "CONFIG.c_include_sg" in " ".join(c)))
    assert "CONFIG.c_m_axis_mm2s_tdata_width 32" in dma and "CONFIG.c_s_axis_s2mm_tdata_width 64" in dma
    assert any(c[0] == "launch_runs" and "write_bitstream" in c for c in calls)
    assert any(c[0] == "report_utilization" for c in calls) and any(c[0] == "report_timing_summary" for c in calls)


@needs_tclsh
def test_every_ip_is_instantiated(generated, tmp_path):
    design, files = generated
    calls = run_tcl(files.tcl, tmp_path)
    cells = {c[-1]: c[c.index("-vlnv") + 1] for c in calls if c[0] == "create_bd_cell"}
    chain = design.blocks[: design.exits[-1] + 1]
    for name in list(chain) + list(design.heads):
        assert cells[f"{name}_0"] == f"xilinx.com:hls:{name}:1.0"
    k = len(design.exits)
    for i in range(k):
        assert cells[f"eehw_decision{i}"] == f"xilinx.com:hls:eehw_decision{i}:1.0"
    for i in range(k - 1):
        assert f"eehw_fork{i}" in cells and f"eehw_buffer{i}" in cells
    assert cells["axi_dma_0"] == "xilinx.com:ip:axi_dma:7.1"
    assert cells["processing_system7_0"] == "xilinx.com:ip:processing_system7:5.5"
    assert {"eehw_input", "eehw_merge"} <= set(cells)
    assert set(files.ips) <= set(cells)
    # a design truncated at its final exit instantiates nothing after it
    for name in design.blocks[design.exits[-1] + 1 :]:
        assert f"{name}_0" not in cells


@needs_tclsh
def test_blocks_heads_and_decisions_are_wired(generated, tmp_path):
    design, files = generated
    edges = stream_edges(run_tcl(files.tcl, tmp_path))
    slaves = [(e[2], e[3]) for e in edges]
    assert len(slaves) == len(set(slaves)), "an AXI-Stream slave is driven twice"
    succ = {}
    for src, src_port, dst, dst_port in edges:
        succ.setdefault(src, []).append((src_port, dst, dst_port))

    def follow(cell, through=("eehw_fork", "eehw_fifo_features", "eehw_buffer")):
        """Cells reachable downstream through forks, feature FIFOs and buffers only."""
        seen, todo, found = set(), [cell], set()
        while todo:
            for port, nxt, _ in succ.get(todo.pop(), []):
                if nxt in seen or port == "m_tags":
                    continue
                seen.add(nxt)
                if nxt.startswith(through):
                    todo.append(nxt)
                else:
                    found.add(nxt)
        return found

    assert ("axi_dma_0", "M_AXIS_MM2S", "eehw_input", "s_dma") in edges
    assert ("eehw_input", "m_features", f"{design.blocks[0]}_0", "") in edges
    final = design.exits[-1]
    for i in range(final):  # every block feeds the next one (via fork/FIFO/buffer at an exit)
        assert f"{design.blocks[i + 1]}_0" in follow(f"{design.blocks[i]}_0"), design.blocks[i]
    for k, (position, head) in enumerate(zip(design.exits, design.heads)):
        assert f"{head}_0" in follow(f"{design.blocks[position]}_0")
        assert (f"{head}_0", "", f"eehw_decision{k}", "s_logits") in edges
        assert (f"eehw_decision{k}", "m_result", "eehw_merge", f"s_exit{k}") in edges
        if k < len(design.exits) - 1:
            assert (f"eehw_decision{k}", "m_verdict", f"eehw_buffer{k}", "s_verdict") in edges
            assert (f"eehw_buffer{k}", "m_features", f"{design.blocks[position + 1]}_0", "") in edges
        # tags: from the input adapter for the first exit, else from the previous buffer
        tag_src = ("eehw_input", "m_tags") if k == 0 else (f"eehw_buffer{k - 1}", "m_tags")
        fifo = next(e[2] for e in edges if e[:2] == tag_src)
        assert (fifo, "M_AXIS", f"eehw_decision{k}", "s_tags") in edges
    assert ("eehw_merge", "m_out", "axi_dma_0", "S_AXIS_S2MM") in edges


@needs_tclsh
def test_thresholds_mapped_to_registers(generated, tmp_path):
    design, files = generated
    calls = run_tcl(files.tcl, tmp_path)
    bases = {}
    for c in calls:
        if c[0] == "assign_bd_address" and "-offset" in c:
            seg = re.fullmatch(r"<get_bd_addr_segs:(\S+)/\S+/Reg>", c[-1]).group(1)
            bases[seg] = int(c[c.index("-offset") + 1], 16)
    regmap = json.loads(files.register_map.read_text())
    exits = [r for r in regmap["registers"] if r["what"] == "exit"]
    assert [r["exit"] for r in exits] == list(range(len(design.exits) - 1))  # the final exit has none
    addresses = set()
    for r in regmap["registers"]:
        assert int(r["base"], 16) == bases[r["cell"]]
        assert int(r["address"], 16) == bases[r["cell"]] + 0x10
        addresses.add(int(r["address"], 16))
    assert len(addresses) == len(regmap["registers"])
    for r in exits:
        assert r["cell"] == f"eehw_decision{r['exit']}"
        assert (r["threshold_bits"], r["enable_bit"]) == (design.fmt.thr_w, 31)
    assert int(regmap["dma"]["base"], 16) == bases["axi_dma_0"]
    # the register offset the map promises is the one the HLS source pins
    source = files.ip_source.read_text()
    for r in exits:
        body = source.split(f"void eehw_decision{r['exit']}(")[1].split("\n}\n")[0]
        assert "port=exit_reg offset=0x10 bundle=ctrl" in body
    assert regmap["decision"]["shifts"] == list(design.shifts)


def test_top_ips_compile(generated, tmp_path):
    """The generated C++ of the small IPs is valid against hls4ml's ap_types (C-sim headers)."""
    design, files = generated
    cmd = [
        "g++",
        "-std=c++14",
        "-fsyntax-only",
        f"-I{ap_types_dir()}",
        f"-I{templates_dir() / 'tb' / 'include'}",
        f"-I{files.ip_source.parent}",
        str(files.ip_source),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[:3000]
    scripts = {p.name for p in files.ip_scripts}
    assert scripts == {f"{ip}_hls.tcl" for ip in files.ips}
    text = (files.ip_source.parent / "eehw_merge_hls.tcl").read_text()
    assert "set_part xc7z020clg400-1" in text and "create_clock -period 10" in text


def test_bad_designs_are_refused(tmp_path):
    fmt = DecisionFormat(PolicyName.MARGIN, 10, 16, 8)
    base = dict(
        name="d",
        blocks=("a", "b"),
        outputs=(Stream(4, 8), Stream(4, 8)),
        input=Stream(4, 8),
        input_signed=False,
        exits=(0, 1),
        heads=("h0", "h1"),
        fmt=fmt,
    )
    with pytest.raises(EehwError, match="increasing"):
        TopDesign(**{**base, "exits": (1, 0)})
    with pytest.raises(EehwError, match="head names"):
        TopDesign(**{**base, "heads": ("h0",)})
    with pytest.raises(EehwError, match="unique"):
        TopDesign(**{**base, "heads": ("h0", "a")})
    with pytest.raises(EehwError, match="not a valid IP name"):
        TopDesign(**{**base, "blocks": ("a.b", "c")})
    with pytest.raises(EehwError, match="no hardware decision unit"):
        TopDesign(**{**base, "fmt": DecisionFormat(PolicyName.ENTROPY, 10, 16, 8)})
    with pytest.raises(EehwError, match="32-bit result field"):
        TopDesign(**{**base, "fmt": DecisionFormat(PolicyName.MARGIN, 10, 40, 8)})
    with pytest.raises(EehwError, match="zynq7"):
        write_hls_top(TopDesign(**base), load_board("zcu102"), tmp_path)


# ---------------------------------------------------------------------------------------------
# C-sim of the top's own IPs: input adapter, fork, decision, conditional buffer, merge


CSIM_DRIVER = r"""
#include <cstdio>
#include "eehw_top_ips.cpp"

// stdin: N batch thr en, then per sample: 4 logits of exit 0, 2 feature beats, 4 logits of exit 1
// stdout: lines "in <beat> <tag>", "fwd <beat>", "tag <tag>", "out <word> <last>"
int main() {
    long n, batch, thr, en;
    if (scanf("%ld %ld %ld %ld", &n, &batch, &thr, &en) != 4) return 2;
    hls::stream<ap_uint<32> > dma("dma"), in_features("in_features");
    hls::stream<eehw_tag_t> tags0("tags0"), tags1("tags1");
    hls::stream<ap_uint<24> > feat("feat"), head("head"), keep("keep"), fwd("fwd");
    hls::stream<ap_uint<32> > logits0("logits0"), logits1("logits1");
    hls::stream<eehw_verdict_t> verdict("verdict");
    hls::stream<eehw_result_t> res0("res0"), res1("res1");
    hls::stream<eehw_out_beat_t> out("out");
    const ap_uint<32> reg = ap_uint<32>(thr) | (ap_uint<32>(en) << 31);
    for (long s = 0; s < n; s++) {
        long z0[4], beats[2], z1[4];
        for (int i = 0; i < 4; i++) scanf("%ld", &z0[i]);
        for (int i = 0; i < 2; i++) scanf("%ld", &beats[i]);
        for (int i = 0; i < 4; i++) scanf("%ld", &z1[i]);
        dma.write(ap_uint<32>(0x01020304u + s));
        eehw_input(dma, in_features, tags0, ap_uint<32>(batch));
        const eehw_tag_t tag = tags0.read();
        printf("in %lu %lu\n", (unsigned long)in_features.read().to_uint64(), (unsigned long)tag.to_uint64());
        tags0.write(tag);  // on to the decision unit, as the tag FIFO does
        ap_uint<32> l0 = 0, l1 = 0;
        for (int i = 0; i < 4; i++) { l0.range(8 * i + 7, 8 * i) = ap_int<8>(z0[i]); l1.range(8 * i + 7, 8 * i) = ap_int<8>(z1[i]); }
        for (int b = 0; b < 2; b++) {
            feat.write(beats[b]);
            eehw_fork0(feat, head, keep);
            if (head.read() != ap_uint<24>(beats[b])) { printf("fork mismatch\n"); return 1; }
        }
        logits0.write(l0);
        eehw_decision0(logits0, tags0, verdict, res0, reg);
        for (int c = 0; c < 3; c++) {  // verdict, then 2 beats
            hls::stream<ap_uint<24> > &src = keep;
            eehw_buffer0(src, verdict, fwd, tags1);
        }
        while (!fwd.empty()) printf("fwd %lu\n", (unsigned long)fwd.read().to_uint64());
        if (!tags1.empty()) {
            eehw_tag_t t = tags1.read();
            printf("tag %lu\n", (unsigned long)t.to_uint64());
            tags1.write(t);
            logits1.write(l1);
            eehw_decision1(logits1, tags1, res1);
        }
        for (int c = 0; c < 2; c++) {
            if (res0.empty() && res1.empty()) break;
            eehw_merge(res0, res1, out, ap_uint<32>(batch));
        }
        while (!out.empty()) {
            eehw_out_beat_t o = out.read();
            printf("out %lu %d\n", (unsigned long)o.data.to_uint64(), (int)o.last);
        }
    }
    return 0;
}
"""


def _csim_driver(design, tmp_path):
    """The top's IPs for ``design`` and CSIM_DRIVER, compiled with g++."""
    files = write_hls_top(design, load_board("pynq-z2"), tmp_path / "out")
    driver = files.ip_source.parent / "csim_driver.cpp"
    driver.write_text(CSIM_DRIVER)
    binary = tmp_path / "csim"
    cmd = [
        "g++",
        "-std=c++14",
        "-O1",
        f"-I{ap_types_dir()}",
        f"-I{templates_dir() / 'tb' / 'include'}",
        f"-I{files.ip_source.parent}",
        "-o",
        str(binary),
        str(driver),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[:3000]
    return binary


def _two_exit_design(fmt, shifts=()):
    return TopDesign(
        name="t",
        blocks=("b0", "b1"),
        outputs=(Stream(3, 8, 2), Stream(3, 8)),
        input=Stream(4, 8),
        input_signed=False,
        exits=(0, 1),
        heads=("h0", "h1"),
        fmt=fmt,
        shifts=shifts,
    )


def test_top_decision_ip_runs_the_shared_vector_file(tmp_path, decision_vectors):
    """The early exit's decision IP inside the top (with its tag FIFO, conditional buffer and
    merge), driven with the shared decision-unit vector file's 4 x 8-bit cases (margin and pow2):
    a row leaves at exit 0 exactly when the file says, with the file's class and confidence."""
    from eehw.rtl_sim.models.decision_vectors import read

    cases = [c for c in read(decision_vectors) if (c.classes, c.logit_bits) == (4, 8)]
    assert {c.policy for c in cases} == {"margin", "max_softmax_pow2"}
    for i, case in enumerate(cases):
        fmt = DecisionFormat(PolicyName(case.policy), 4, 8, case.frac_bits)
        binary = _csim_driver(_two_exit_design(fmt, (case.shift, 0)), tmp_path / f"case{i}")
        for g in case.groups:
            n = len(g.z)
            text = f"{n} {n} {g.threshold} {g.enable}\n" + "\n".join(
                " ".join(map(str, [*g.z[s], s, s, *g.z[s]])) for s in range(n)
            )
            run = subprocess.run([str(binary)], input=text, capture_output=True, text=True, timeout=60)
            assert run.returncode == 0, run.stdout[-2000:] + run.stderr
            words = [int(ln.split()[1]) for ln in run.stdout.splitlines() if ln.startswith("out ")]
            assert len(words) == n
            by_tag = {w >> 48: w for w in words}
            exit_idx = np.array([(by_tag[s] >> 40) & 0xFF for s in range(n)])
            where = f"{case.key} thr={g.threshold} en={g.enable}"
            np.testing.assert_array_equal(exit_idx == 0, g.exit == 1, err_msg=where)
            left = np.flatnonzero(g.exit == 1)
            np.testing.assert_array_equal([(by_tag[s] >> 32) & 0xFF for s in left], g.cls[left], err_msg=where)
            np.testing.assert_array_equal([by_tag[s] & 0xFFFFFFFF for s in left], g.conf[left], err_msg=where)


def test_top_ips_csim(tmp_path):
    """Input adapter, fork, decision units, conditional buffer and merge, run in C-sim on a
    two-exit design, checked against eehw.policy.policies and the stream contract by hand."""
    from eehw.policy.policies import margin_score

    binary = _csim_driver(_two_exit_design(DecisionFormat(PolicyName.MARGIN, 4, 8, 8)), tmp_path)

    rng = np.random.default_rng(3)
    n, batch, thr = 300, 100, 40
    z0 = rng.integers(-128, 128, size=(n, 4))
    z0[::7] = 5  # all-equal rows: margin 0, never exits at thr 40
    z1 = rng.integers(-128, 128, size=(n, 4))
    beats = rng.integers(0, 1 << 24, size=(n, 2))
    text = f"{n} {batch} {thr} 1\n" + "\n".join(" ".join(map(str, [*z0[s], *beats[s], *z1[s]])) for s in range(n))
    run = subprocess.run([str(binary)], input=text, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr
    lines = [line.split() for line in run.stdout.splitlines()]

    # input adapter: the DMA word becomes the beat; tags count samples and wrap at the batch size
    ins = [(int(a), int(b)) for kind, a, b in (ln for ln in lines if ln[0] == "in")]
    assert ins == [(0x01020304 + s, s % batch) for s in range(n)]

    exit0 = margin_score(z0) >= thr
    # conditional buffer: exactly the beats of the samples that did not exit, in order, with their tags
    fwd = [int(ln[1]) for ln in lines if ln[0] == "fwd"]
    assert fwd == beats[~exit0].reshape(-1).tolist()
    tags = [int(ln[1]) for ln in lines if ln[0] == "tag"]
    assert tags == [s % batch for s in np.flatnonzero(~exit0)]

    # merge: one word per sample {tag, exit, class, confidence}; TLAST on every batch's last result
    outs = [(int(ln[1]), int(ln[2])) for ln in lines if ln[0] == "out"]
    assert len(outs) == n
    assert [last for _, last in outs] == [int((i + 1) % batch == 0) for i in range(n)]
    exit_idx = np.where(exit0, 0, 1)
    cls = np.where(exit0, np.argmax(z0, axis=1), np.argmax(z1, axis=1))
    conf = np.where(exit0, margin_score(z0), margin_score(z1))
    want = [(s % batch) << 48 | int(exit_idx[s]) << 40 | int(cls[s]) << 32 | int(conf[s]) for s in range(n)]
    assert [w for w, _ in outs] == want
    assert 0 < exit0.sum() < n


def test_from_golden_describes_kept_exits():
    """Channels-last streams, sanitised IP names, the kept exits' shifts (by the model's exit order)."""
    from types import SimpleNamespace

    from eehw.model.golden import Quant
    from eehw.policy.policies import PolicyParams

    def block(name, in_shape, out_shape, bits):
        return SimpleNamespace(
            name=name,
            in_shape=in_shape,
            out_shape=out_shape,
            out_bits=bits,
            ops=(Quant(f"{name}.q", None, 0, 7, True),),
        )

    golden = SimpleNamespace(
        blocks=(
            block("blocks.0", (1, 8, 8), (8, 4, 4), 6),
            block("blocks.1", (8, 4, 4), (16, 2, 2), 6),
            block("blocks.2", (16, 2, 2), (32,), 6),
        ),
        heads={
            0: block("heads.0", (8, 4, 4), (10,), 12),
            1: block("heads.1", (16, 2, 2), (10,), 12),
            2: block("heads.2", (32,), (10,), 12),
        },
        exits=[0, 1, 2],
    )
    fmt = DecisionFormat(PolicyName.MAX_SOFTMAX_POW2, 10, 12, 6)
    design = TopDesign.from_golden("cnn", golden, [0, 2], PolicyParams("max_softmax_pow2", shifts=(3, 4, 5)), fmt)
    assert design.blocks == ("blocks_0", "blocks_1", "blocks_2")
    assert design.heads == ("heads_0", "heads_2")
    assert design.outputs == (Stream(8, 6, 16), Stream(16, 6, 4), Stream(32, 6, 1))
    assert (design.input, design.input_signed) == (Stream(1, 7, 64), True)
    assert design.shifts == (3, 5)
    with pytest.raises(EehwError, match="no exit head after block"):
        TopDesign.from_golden("cnn", golden, [0, 3], PolicyParams("margin"), fmt)
    with pytest.raises(EehwError, match="do not output 16-bit logits"):
        TopDesign.from_golden(
            "cnn", golden, [0, 2], PolicyParams("margin"), DecisionFormat(PolicyName.MARGIN, 10, 16, 8)
        )
