"""The confidence decision unit on the HLS path: its hls4ml extension layer and qonnx custom op.

The unit itself is one header, ``hls_templates/nnet_utils/nnet_eehw_decision.h``, bit-exact with
``eehw.policy.policies`` and ``rtl_sim/hdl/decision_unit.v``. It reaches hls4ml through the Extension API
(custom layer + templates + ``register_source``, this module), so an exit head and its decision unit are one
hls4ml project that hls4ml's own writer, C-sim and build drive. The heads come through the ONNX
frontend, hence an ONNX handler for a custom node ``EarlyExitDecision`` (domain
``DECISION_DOMAIN``) and ``attach_decision`` to append it to a head's QONNX graph.

The node has two inputs, the head's logits and a run-time control vector ``{threshold, enable}``
(the AXI-Lite register of the top; enable 0 = the exit is off, a ``None`` threshold), and one
output ``{exit flag, class, confidence}``. Both io_types work: io_parallel (arrays) and io_stream
(one beat of logits, one of control and one of result per sample). The same node is a qonnx
custom op (this module is its domain), so qonnx's cleanup and ``execute_onnx`` still work on a
head that carries it. ``eehw.hw.hls.qonnx_export.head_graph`` is the place to call ``attach_decision``.
"""

from __future__ import annotations

import numpy as np

from eehw.errors import EehwError
from eehw.hw.hls.decision import HEADER, DecisionUnit, header_path
from eehw.hw.plan import DecisionFormat
from eehw.policy.policies import HARDWARE_POLICY_CODES, PolicyName, policy_name

DECISION_OP = "EarlyExitDecision"
DECISION_DOMAIN = "eehw.hw.hls.decision_layer"  # also a qonnx custom-op domain: the module holding `custom_op`

# ---------------------------------------------------------------------------------------------
# hls4ml Extension API: layer, ONNX handler, templates, source

# The layer's C++ config and call are Python format strings, not Jinja: hls4ml's
# LayerConfigTemplate / FunctionCallTemplate fill ``self.template`` with ``str.format`` (as its
# own layers' templates do), so they stay in the form the Extension API takes.
_CONFIG_TEMPLATE = """struct config{index} : nnet::eehw_decision_config {{
    static const unsigned n_classes = {n_classes};
    static const unsigned logit_width = {logit_width};
    static const unsigned policy = {policy};
    static const unsigned shift = {shift};
    static const unsigned frac_bits = {frac_bits};
    static const unsigned levels = {levels};
    static const unsigned class_width = {class_width};
    static const unsigned conf_width = {conf_width};
    static const unsigned thr_width = {thr_width};
}};
"""
_FUNCTION_TEMPLATE = "nnet::eehw_decision<{input_t}, {ctrl_t}, {output_t}, {config}>({input}, {ctrl}, {output});"
_NODE_ATTRIBUTES = ("policy", "shift", "frac_bits", "exit_index", "logit_bits")
_BACKENDS = ("Vivado", "Vitis")
_registered = False


def register_extension() -> None:
    """Teach hls4ml the EarlyExitDecision layer (idempotent; call before converting a head).

    Registers the layer class, its ONNX handler, its config and function templates for the
    Vivado and Vitis backends, and the header as custom source copied into every project.
    """
    global _registered
    if _registered:
        return
    from hls4ml.backends import get_backend
    from hls4ml.backends.template import FunctionCallTemplate, LayerConfigTemplate
    from hls4ml.converters.onnx_to_hls import get_supported_onnx_layers, register_onnx_layer_handler
    from hls4ml.model.layers import Layer, register_layer
    from hls4ml.model.types import IntegerPrecisionType

    class EarlyExitDecision(Layer):
        """Exit decision on a head's logits; output {exit flag, class, confidence}."""

        def initialize(self) -> None:
            if len(self.inputs) != 2:
                raise EehwError(
                    f"{DECISION_OP} node '{self.name}' needs 2 inputs (logits, control), got {len(self.inputs)}"
                )
            logits = self.get_input_variable(self.inputs[0])
            ctrl = self.get_input_variable(self.inputs[1])
            if len(logits.shape) != 1 or list(ctrl.shape) != [2]:
                raise EehwError(
                    f"{DECISION_OP} node '{self.name}' needs flat logits and a control "
                    f"vector of 2, got shapes {list(logits.shape)} and {list(ctrl.shape)}"
                )
            # A head's logits come from a Quant whose hls4ml type is inferred after this point:
            # take the width attach_decision read off that Quant, else the type already set.
            width = self.get_attr("logit_bits") or getattr(logits.type.precision, "width", 0) or 0
            if width <= 0:
                raise EehwError(
                    f"{DECISION_OP} node '{self.name}': cannot tell the logit width; end the "
                    "head in a Quant node or set the node attribute logit_bits"
                )
            unit = DecisionUnit(
                DecisionFormat(
                    policy_name(self.get_attr("policy")), logits.shape[0], width, self.get_attr("frac_bits")
                ),
                self.get_attr("shift"),
            )
            for key, value in unit.config_fields().items():
                self.set_attr(key, value)
            # The control vector is a register, not data: its type follows the threshold width
            # whatever the project's default precision says.
            ctrl.type.precision = IntegerPrecisionType(width=unit.fmt.thr_w, signed=False)
            self.add_output_variable([3], precision=IntegerPrecisionType(width=unit.result_width, signed=False))

    class EarlyExitDecisionConfigTemplate(LayerConfigTemplate):
        def __init__(self) -> None:
            super().__init__(EarlyExitDecision)
            self.template = _CONFIG_TEMPLATE

        def format(self, node) -> str:
            width = node.get_input_variable(node.inputs[0]).type.precision.width
            if width != node.get_attr("logit_width"):
                raise EehwError(
                    f"{DECISION_OP} node '{node.name}': hls4ml typed the logits with {width} bits "
                    f"but the decision unit was built for {node.get_attr('logit_width')}; set the "
                    "head output precision to the Quant's type"
                )
            return self.template.format(**self._default_config_params(node))

    class EarlyExitDecisionFunctionTemplate(FunctionCallTemplate):
        def __init__(self) -> None:
            super().__init__(EarlyExitDecision, include_header=[f"nnet_utils/{HEADER}"])
            self.template = _FUNCTION_TEMPLATE

        def format(self, node) -> str:
            params = self._default_function_params(node)
            ctrl = node.get_input_variable(node.inputs[1])
            params["ctrl_t"], params["ctrl"] = ctrl.type.name, ctrl.name
            return self.template.format(**params)

    def parse_decision(node, input_names, input_shapes, graph) -> dict:
        from hls4ml.converters.onnx_to_hls import get_onnx_attribute

        layer = {
            "class_name": DECISION_OP,
            "name": node.name,
            "inputs": list(input_names),
            "outputs": list(node.output),
        }
        for key in _NODE_ATTRIBUTES:
            layer[key] = get_onnx_attribute(node, key)
        return layer

    register_layer(DECISION_OP, EarlyExitDecision)
    if DECISION_OP not in get_supported_onnx_layers():
        register_onnx_layer_handler(DECISION_OP, parse_decision)
    for name in _BACKENDS:
        backend = get_backend(name)
        backend.register_template(EarlyExitDecisionConfigTemplate)
        backend.register_template(EarlyExitDecisionFunctionTemplate)
        backend.register_source(header_path())
    _registered = True


def attach_decision(model, policy: PolicyName | str, params, exit_index: int):
    """Append an EarlyExitDecision node to an exit head's (cleaned) QONNX graph.

    ``model`` is a qonnx ``ModelWrapper`` with one output, the logits (1, C). The result has two
    inputs, the head's input and ``exit<k>_ctrl`` (1, 2) = {threshold, enable}, and one output
    ``exit<k>_decision`` (1, 3) = {exit flag, class, confidence}. ``params`` (a ``PolicyParams``,
    or None for shift 0 and 8 fractional bits) gives this exit's shift and the fraction width.
    Call it after qonnx's cleanup: ONNX shape inference does not know the custom node.
    """
    import onnx
    from onnx import TensorProto, helper
    from qonnx.core.modelwrapper import ModelWrapper

    name = policy_name(policy)
    if name not in HARDWARE_POLICY_CODES:
        raise EehwError(
            f"policy '{name.value}' has no hardware decision unit; use one of "
            f"{', '.join(p.value for p in HARDWARE_POLICY_CODES)}"
        )
    if params is not None and policy_name(params.name) != name:
        raise EehwError(f"attach_decision got policy '{name.value}' but params for '{params.name.value}'")
    shift = 0 if params is None else params.shift(exit_index)
    frac_bits = 8 if params is None else params.frac_bits
    if not isinstance(model, ModelWrapper):
        model = ModelWrapper(model)
    graph = model.graph
    if len(graph.output) != 1:
        raise EehwError(f"an exit head must have one output (its logits), got {len(graph.output)}")
    if any(n.op_type == DECISION_OP for n in graph.node):
        raise EehwError("this head already ends in a decision unit; attach it once")
    logits = graph.output[0]
    shape = model.get_tensor_shape(logits.name)
    if shape is None or len(shape) != 2 or shape[1] < 2:
        raise EehwError(
            f"exit head output '{logits.name}' must have shape (1, classes), got {shape}; "
            "flatten the head's logits before attaching the decision unit"
        )
    ctrl = helper.make_tensor_value_info(f"exit{exit_index}_ctrl", TensorProto.FLOAT, [1, 2])
    logit_frac_bits, logit_bits = _logit_quant(model, logits.name)
    result = helper.make_tensor_value_info(f"exit{exit_index}_decision", TensorProto.FLOAT, [1, 3])
    node = helper.make_node(
        DECISION_OP,
        [logits.name, ctrl.name],
        [result.name],
        name=f"exit{exit_index}_decision_unit",
        domain=DECISION_DOMAIN,
        policy=name.value,
        shift=int(shift),
        frac_bits=int(frac_bits),
        exit_index=int(exit_index),
        logit_frac_bits=logit_frac_bits,
        logit_bits=logit_bits,
    )
    graph.value_info.append(logits)
    graph.output.remove(logits)
    graph.output.append(result)
    graph.input.append(ctrl)
    graph.node.append(node)
    if not any(o.domain == DECISION_DOMAIN for o in model.model.opset_import):
        model.model.opset_import.append(onnx.helper.make_opsetid(DECISION_DOMAIN, 1))
    return model


def _logit_quant(model, tensor: str) -> tuple[int, int]:
    """(fraction bits, bit width) of the logits when a power-of-two Quant produces them, else 0s.

    The width sizes the decision unit before hls4ml has typed the logits; the fraction bits let
    qonnx execute the node on real values (hls4ml reads the raw bits and does not need them).
    """
    producer = model.find_producer(tensor)
    if producer is None or producer.op_type != "Quant" or len(producer.input) < 4:
        return 0, 0
    scale, bits = (model.get_initializer(producer.input[i]) for i in (1, 3))
    width = int(bits) if bits is not None and np.size(bits) == 1 and float(bits).is_integer() else 0
    if scale is None or np.size(scale) != 1 or not float(scale) > 0:
        return 0, width
    exp = float(np.log2(float(scale)))
    return (int(-exp) if exp.is_integer() else 0), width


def control_vector(threshold: int | None, fmt: DecisionFormat) -> tuple[int, int]:
    """{threshold, enable} for one exit: ``None`` disables it (never exit), as in eehw.policy.policies."""
    if threshold is None:
        return 0, 0
    if isinstance(threshold, bool) or not isinstance(threshold, (int, np.integer)) or threshold < 0:
        raise EehwError(f"a decision threshold must be a non-negative integer or None, got {threshold!r}")
    if threshold >= 1 << fmt.thr_w:
        raise EehwError(f"threshold {threshold} does not fit the {fmt.thr_w}-bit register (max {(1 << fmt.thr_w) - 1})")
    return int(threshold), 1


# ---------------------------------------------------------------------------------------------
# qonnx custom op: the same node executes (eehw.policy.policies) and passes shape inference in qonnx, so
# a head with its decision unit still goes through qonnx's cleanup and execute_onnx.


def _qonnx_op_class():
    from qonnx.core.datatype import DataType
    from qonnx.custom_op.base import CustomOp

    from eehw.policy.policies import EXIT_IF_AT_LEAST, margin_score, pow2_softmax_sum

    class EarlyExitDecision(CustomOp):
        """qonnx view of the decision node: output (N, 3) = {exit flag, class, confidence}."""

        def get_nodeattr_types(self):
            return {
                "policy": ("s", True, ""),
                "shift": ("i", False, 0),
                "frac_bits": ("i", False, 8),
                "exit_index": ("i", False, 0),
                "logit_frac_bits": ("i", False, 0),
                "logit_bits": ("i", False, 0),
            }

        def make_shape_compatible_op(self, model):
            batch = (model.get_tensor_shape(self.onnx_node.input[0]) or [1])[0]
            return self.make_const_shape_op([batch, 3])

        def infer_node_datatype(self, model):
            model.set_tensor_datatype(self.onnx_node.output[0], DataType["UINT32"])

        def execute_node(self, context, graph):
            node = self.onnx_node
            policy = policy_name(self.get_nodeattr("policy"))
            real = np.asarray(context[node.input[0]], dtype=np.float64)
            z = np.round(real.reshape(real.shape[0], -1) * 2.0 ** self.get_nodeattr("logit_frac_bits")).astype(np.int64)
            ctrl = np.asarray(context[node.input[1]]).reshape(-1, 2).astype(np.int64)
            if policy == PolicyName.MARGIN:
                score = margin_score(z)
            else:
                score = pow2_softmax_sum(z, self.get_nodeattr("shift"), self.get_nodeattr("frac_bits"))
            passed = score >= ctrl[:, 0] if policy in EXIT_IF_AT_LEAST else score <= ctrl[:, 0]
            out = np.stack([passed & (ctrl[:, 1] != 0), np.argmax(z, axis=1), score], axis=1)
            context[node.output[0]] = out.astype(np.float32)

        def verify_node(self):
            return [f"{DECISION_OP}: inputs {'ok' if len(self.onnx_node.input) == 2 else 'need 2'}"]

    return EarlyExitDecision


def __getattr__(name: str):
    # qonnx finds a domain's ops in the module named like the domain, via `custom_op`; built on
    # first use so importing eehw.hw.hls.decision_layer does not import qonnx.
    if name == "custom_op":
        ops = {DECISION_OP: _qonnx_op_class()}
        globals()["custom_op"] = ops
        return ops
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
