"""Reference model of rtl_sim/hdl/exit_gate.v: the conditional feature buffer after an exit head.

Features and decisions arrive in sample order on two streams. The n-th feature is paired with
the n-th decision; if the decision's exit flag (bit 0) is set the decision is a result and the
feature is dropped, otherwise the feature goes on to the next block and there is no result.
"""

from collections import deque


class ExitGateModel:
    """Queue-based model: push inputs as they are accepted, read the expected outputs in order."""

    def __init__(self):
        self._features = deque()   # (data, tag) waiting for their decision
        self._decisions = deque()  # (decision, tag) waiting for their feature
        self.feat_out = deque()    # expected m_feat beats, (data, tag), oldest first
        self.res_out = deque()     # expected m_res beats, (decision, tag), oldest first
        self.tag_mismatches = 0    # pairs whose tags differed (the RTL raises `error`)

    def push_feature(self, data: int, tag: int) -> None:
        self._features.append((data, tag))
        self._pair()

    def push_decision(self, decision: int, tag: int) -> None:
        self._decisions.append((decision, tag))
        self._pair()

    def _pair(self) -> None:
        while self._features and self._decisions:
            feature, feature_tag = self._features.popleft()
            decision, decision_tag = self._decisions.popleft()
            if feature_tag != decision_tag:
                self.tag_mismatches += 1
            if decision & 1:
                self.res_out.append((decision, decision_tag))
            else:
                self.feat_out.append((feature, feature_tag))

    @property
    def pending(self) -> int:
        """Inputs not yet paired (features plus decisions)."""
        return len(self._features) + len(self._decisions)


def exit_gate(features, decisions):
    """Whole-stream form: lists of (data, tag) and (decision, tag) -> (feat_out, res_out)."""
    model = ExitGateModel()
    for data, tag in features:
        model.push_feature(data, tag)
    for decision, tag in decisions:
        model.push_decision(decision, tag)
    return list(model.feat_out), list(model.res_out)
