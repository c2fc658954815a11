"""Reference model of rtl_sim/hdl/exit_gate.v: the conditional feature buffer after an exit head.

Features arrive as a stream of beats (data, tag, last); a sample is the beats up to and
including one with last = 1. Decisions arrive one per sample, in sample order. The n-th
decision owns the n-th sample: if its exit flag (bit 0) is set the decision is a result
(sent once) and all the sample's beats are dropped; otherwise every beat of the sample goes on
to the next block and there is no result. Each beat's tag must equal its decision's tag; the
model counts the beats where it does not (the RTL raises its sticky `error`).
"""

from collections import deque


class ExitGateModel:
    """Queue-based model: push inputs as they are accepted, read the expected outputs in order."""

    def __init__(self):
        self._features = deque()  # (data, tag, last) beats waiting for their decision
        self._decisions = deque()  # (decision, tag) waiting for (the rest of) their sample
        self._result_sent = False  # the head decision's result is already in res_out
        self.feat_out = deque()  # expected m_feat beats, (data, tag, last), oldest first
        self.res_out = deque()  # expected m_res beats, (decision, tag), oldest first
        self.tag_mismatches = 0  # feature beats whose tag differed from their decision's
        self.dropped = 0  # feature beats of exited samples

    def push_feature(self, data: int, tag: int, last: int = 1) -> None:
        self._features.append((data, tag, int(last)))
        self._pair()

    def push_decision(self, decision: int, tag: int) -> None:
        self._decisions.append((decision, tag))
        self._pair()

    def _pair(self) -> None:
        while self._decisions:
            decision, decision_tag = self._decisions[0]
            exits = bool(decision & 1)
            if exits and not self._result_sent:
                self.res_out.append((decision, decision_tag))
                self._result_sent = True
            if not self._features:
                return
            data, tag, last = self._features.popleft()
            if tag != decision_tag:
                self.tag_mismatches += 1
            if exits:
                self.dropped += 1
            else:
                self.feat_out.append((data, tag, last))
            if last:
                self._decisions.popleft()
                self._result_sent = False

    @property
    def pending(self) -> int:
        """Inputs not yet consumed (feature beats plus decisions)."""
        return len(self._features) + len(self._decisions)


def exit_gate(features, decisions):
    """Whole-stream form: lists of (data, tag, last) beats and (decision, tag) -> (feat_out, res_out)."""
    model = ExitGateModel()
    for beat in features:
        model.push_feature(*beat)
    for decision, tag in decisions:
        model.push_decision(decision, tag)
    return list(model.feat_out), list(model.res_out)
