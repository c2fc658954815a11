"""The PYNQ driver's pure parts, against words built by hand, and its board flow with a fake pynq."""

import json
import sys
import types

import numpy as np
import pytest

from eehw.board import load_board
from eehw.deploy.pynq_driver import EarlyExitOverlay, RegisterMap, pack_inputs, threshold_words, unpack_results
from eehw.errors import EehwError
from eehw.hw.hls.top import Stream, TopDesign, write_hls_top
from eehw.hw.plan import DecisionFormat
from eehw.policy.policies import PolicyName


def regmap_json(tmp_path, *, elements=3, bits=5, beats=1, words=1, signed=False, exits=3, thr_bits=17, thresholds=None):
    thresholds = thresholds or [None] * (exits - 1)
    doc = {
        "design": "t",
        "dma": {"base": "0x40400000"},
        "input": {
            "word_bits": 32,
            "words_per_beat": words,
            "beats_per_sample": beats,
            "elements_per_beat": elements,
            "element_bits": bits,
            "element_signed": signed,
        },
        "output": {
            "word_bits": 64,
            "fields": {
                "confidence": {"offset": 0, "bits": 32},
                "class": {"offset": 32, "bits": 8},
                "exit": {"offset": 40, "bits": 8},
                "tag": {"offset": 48, "bits": 16},
            },
        },
        "decision": {"num_classes": 10, "threshold_bits": thr_bits},
        "exits": [{"index": k} for k in range(exits)],
        "registers": [{"what": "batch_size", "address": "0x43C00010"}]
        + [
            {"what": "exit", "exit": k, "address": f"0x43C{k + 1}0010", "enable_bit": 31, "threshold": thresholds[k]}
            for k in range(exits - 1)
        ]
        + [{"what": "batch_size", "address": "0x43CF0010"}],
    }
    path = tmp_path / "register_map.json"
    path.write_text(json.dumps(doc))
    return path


def test_pack_flat_unsigned(tmp_path):
    regmap = RegisterMap.load(regmap_json(tmp_path))
    words = pack_inputs(np.array([[1, 2, 3], [31, 0, 17]]), regmap)
    assert words.dtype == np.uint32
    assert words.tolist() == [1 | 2 << 5 | 3 << 10, 31 | 0 << 5 | 17 << 10]


def test_pack_signed_two_words_per_beat(tmp_path):
    regmap = RegisterMap.load(regmap_json(tmp_path, elements=5, bits=8, words=2, signed=True))
    words = pack_inputs(np.array([[-1, 2, -128, 127, -2]]), regmap)
    # beat = fe 7f 80 02 ff (element 0 in the low byte); 40 bits over two 32-bit words
    assert words.tolist() == [0x7F8002FF, 0x000000FE]


def test_pack_channels_first_map_is_streamed_channels_last(tmp_path):
    regmap = RegisterMap.load(regmap_json(tmp_path, elements=2, bits=4, beats=4))
    x = np.array([[[[1, 2], [3, 4]], [[5, 6], [7, 8]]]])  # (N=1, C=2, H=2, W=2)
    # beat p = (channel 0, channel 1) at position p
    assert pack_inputs(x, regmap).tolist() == [0x51, 0x62, 0x73, 0x84]


def test_pack_refuses_bad_inputs(tmp_path):
    regmap = RegisterMap.load(regmap_json(tmp_path))
    with pytest.raises(EehwError, match="unsigned 5-bit range"):
        pack_inputs(np.array([[32, 0, 0]]), regmap)
    with pytest.raises(EehwError, match="do not match"):
        pack_inputs(np.array([[1, 2]]), regmap)
    with pytest.raises(EehwError, match="quantised integers"):
        pack_inputs(np.array([[1.0, 2.0, 3.0]]), regmap)


def word(tag, exit_, cls, conf):
    return (tag << 48) | (exit_ << 40) | (cls << 32) | conf


def test_unpack_orders_by_tag(tmp_path):
    regmap = RegisterMap.load(regmap_json(tmp_path))
    arrived = np.array([word(2, 0, 7, 300), word(0, 2, 1, 5), word(1, 1, 9, 0xFFFFFFFF)], dtype=np.uint64)
    res = unpack_results(arrived, regmap, 3)
    assert res.classes.tolist() == [1, 9, 7]
    assert res.exits.tolist() == [2, 1, 0]
    assert res.confidences.tolist() == [5, 0xFFFFFFFF, 300]


def test_unpack_refuses_lost_or_duplicated_samples(tmp_path):
    regmap = RegisterMap.load(regmap_json(tmp_path))
    with pytest.raises(EehwError, match="lost or duplicated"):
        unpack_results(np.array([word(0, 0, 1, 1), word(0, 0, 1, 1)], dtype=np.uint64), regmap, 2)
    with pytest.raises(EehwError, match="lost or duplicated"):
        unpack_results(np.array([word(0, 0, 1, 1), word(2, 0, 1, 1)], dtype=np.uint64), regmap, 2)
    with pytest.raises(EehwError, match="got 1 results for 2"):
        unpack_results(np.array([word(0, 0, 1, 1)], dtype=np.uint64), regmap, 2)
    with pytest.raises(EehwError, match="out of range"):
        unpack_results(np.array([word(0, 3, 1, 1)], dtype=np.uint64), regmap, 1)


def test_threshold_words(tmp_path):
    regmap = RegisterMap.load(regmap_json(tmp_path))
    assert threshold_words([12, None], regmap) == [(0x43C10010, 0x8000000C), (0x43C20010, 0)]
    assert threshold_words([0, (1 << 17) - 1], regmap) == [(0x43C10010, 0x80000000), (0x43C20010, 0x8001FFFF)]
    with pytest.raises(EehwError, match="17-bit register"):
        threshold_words([1 << 17, None], regmap)
    with pytest.raises(EehwError, match="got 1 thresholds for 2"):
        threshold_words([1], regmap)
    with pytest.raises(EehwError, match="integer register value"):
        threshold_words([0.5, None], regmap)


def test_register_map_carries_the_chosen_thresholds(tmp_path):
    design = TopDesign(
        name="d",
        blocks=("b0", "b1", "b2"),
        outputs=(Stream(8, 4),) * 3,
        input=Stream(1, 8, 16),
        input_signed=True,
        exits=(0, 1, 2),
        heads=("h0", "h1", "h2"),
        fmt=DecisionFormat(PolicyName.MARGIN, 10, 12, 6),
        thresholds=(37, None),
    )
    files = write_hls_top(design, load_board("pynq-z2"), tmp_path)
    regs = [r for r in json.loads(files.register_map.read_text())["registers"] if r["what"] == "exit"]
    assert [(r["threshold"], r["value"]) for r in regs] == [(37, "0x80000025"), (None, "0x00000000")]
    assert RegisterMap.load(files.register_map).thresholds == (37, None)
    with pytest.raises(EehwError, match="2 early exits need 2 thresholds"):
        TopDesign(**{**design.__dict__, "thresholds": (1,)})
    with pytest.raises(EehwError, match="does not fit the 13-bit register"):
        TopDesign(**{**design.__dict__, "thresholds": (1 << 13, None)})  # margin of 12-bit logits: 13 bits


def test_register_map_from_the_generator(tmp_path):
    """The driver reads the map eehw.hw.hls.top writes (one register per early exit, 0x10 into each IP)."""
    design = TopDesign(
        name="d",
        blocks=("b0", "b1"),
        outputs=(Stream(8, 4), Stream(8, 4)),
        input=Stream(1, 8, 16),
        input_signed=True,
        exits=(0, 1),
        heads=("h0", "h1"),
        fmt=DecisionFormat(PolicyName.MAX_SOFTMAX_POW2, 10, 12, 6),
    )
    files = write_hls_top(design, load_board("pynq-z2"), tmp_path)
    regmap = RegisterMap.load(files.register_map)
    assert regmap.thresholds == (None,)  # no thresholds given: the exit is disabled
    assert regmap.exit_registers == (0x43C10010,)
    assert regmap.batch_registers == (0x43C00010, 0x43C20010)
    assert (regmap.threshold_bits, regmap.enable_bit) == (10, 31)  # 6 + bitlength(10)
    assert (regmap.beats_per_sample, regmap.elements_per_beat, regmap.words_per_beat) == (16, 1, 1)
    assert pack_inputs(np.full((1, 1, 4, 4), -3), regmap).tolist() == [0xFD] * 16


def test_missing_pynq_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynq", None)
    with pytest.raises(EehwError, match="pynq package is not installed"):
        EarlyExitOverlay(tmp_path / "d.bit", regmap_json(tmp_path))


def test_board_flow_with_fake_pynq(tmp_path, monkeypatch):
    """Registers written where the map says, words sent, results returned in input order."""
    writes, sent = [], []

    class MMIO:
        def __init__(self, base, length):
            self.base = base

        def write(self, offset, value):
            writes.append((self.base + offset, value))

    class Buffer(np.ndarray):
        def freebuffer(self):
            pass

    class Channel:
        def __init__(self, kind):
            self.kind = kind

        def transfer(self, buf):
            if self.kind == "send":
                sent.append(np.array(buf))
            else:
                self.out = buf

        def wait(self):
            if self.kind == "recv":  # three results, out of order
                self.out[:] = np.array([word(1, 1, 4, 9), word(2, 0, 3, 8), word(0, 0, 5, 7)], dtype=np.uint64)

    class Overlay:
        def __init__(self, path, download=True):
            self.axi_dma_0 = types.SimpleNamespace(sendchannel=Channel("send"), recvchannel=Channel("recv"))

    fake = types.SimpleNamespace(
        Overlay=Overlay, MMIO=MMIO, allocate=lambda shape, dtype: np.zeros(shape, dtype).view(Buffer)
    )
    monkeypatch.setitem(sys.modules, "pynq", fake)
    regmap_json(tmp_path, thresholds=[None, 0x1234])
    ov = EarlyExitOverlay(tmp_path / "d.bit")
    # Loading writes the register map's thresholds: exit 0 disabled, exit 1 at 0x1234 and enabled.
    assert writes == [(0x43C10010, 0), (0x43C20010, 0x80001234)]
    writes.clear()
    ov.set_thresholds([5, None])
    res = ov.predict(np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]]))
    assert res.classes.tolist() == [5, 4, 3] and res.exits.tolist() == [0, 1, 0]
    assert writes == [(0x43C10010, 0x80000005), (0x43C20010, 0), (0x43C00010, 3), (0x43CF0010, 3)]
    writes.clear()
    EarlyExitOverlay(tmp_path / "d.bit", thresholds=[7, 8])  # an explicit override wins
    assert writes == [(0x43C10010, 0x80000007), (0x43C20010, 0x80000008)]
    assert sent[0].tolist() == [1 | 2 << 5 | 3 << 10, 4 | 5 << 5 | 6 << 10, 7 | 8 << 5 | 9 << 10]
