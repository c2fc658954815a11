"""Latency of a streamed sample: each stage's timing as its module header states it, and how
stages compose into a block, a head and a whole exit path.

A sample is many beats and stages overlap (a convolution's MVU starts on the first window while
the line buffer is still filling), so a stage is described by how its first and last output
beats follow its first and last input beats, for one sample on an idle stage whose output is
always ready:

- ``first``: first input beat -> first output beat, input at full rate;
- ``span``: first -> last input beat when the input is always there (the stage's own pace: a
  folded MVU takes a window every (IN/SIMD)*(OUT/PE) cycles);
- ``drain``: last input beat -> last output beat, the most it can be whatever the input timing;
- the first output needs some input beats, and at most one beat arrives a cycle, so however
  late the input comes its first output is at most ``first - (in_beats - 1)`` after its last
  input beat (for a stage with one output beat, a dense layer, that is its drain).

With f and l the cycles of a sample's first and last input beat at a stage (l as its upstream
would deliver it unblocked), the stage takes its last beat at max(l, f + span), so

    first out <= max(f + first, l + first - (in_beats - 1)),  last out <= max(l, f + span) + drain.

Both are max-plus linear in (f, l): a 2x2 max-plus matrix per stage, and a chain is the matrix
product, so a block, a head and a whole exit path are each one ``Timing``, and the DSE composes
its characterised units the way the generator composes stages (``compose_arrays``). For a chain
fed at full rate from cycle 0 the latency (first input beat -> last output beat) is ``lf``. It
is an upper bound; where one stage dominates and the rest stream at full rate it is exact, and
the simulation measures the true figure either way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NEVER = -(1 << 40)  # "no dependence" in the max-plus matrices (minus infinity, kept an integer)


@dataclass(frozen=True)
class Timing:
    """first_out = max(f + ff, l + fl); last_out = max(f + lf, l + ll)."""

    ff: int
    fl: int
    lf: int
    ll: int

    @classmethod
    def stage(cls, first: int, span: int, drain: int, in_beats: int) -> "Timing":
        return cls(first, first - (in_beats - 1), span + drain, drain)

    @property
    def latency(self) -> int:
        """First input beat -> last output beat of a chain fed at full rate."""
        return self.lf

    @property
    def drain(self) -> int:
        """Last input beat -> last output beat."""
        return self.ll

    def then(self, nxt: "Timing") -> "Timing":
        return Timing(max(self.ff + nxt.ff, self.lf + nxt.fl), max(self.fl + nxt.ff, self.ll + nxt.fl),
                      max(self.ff + nxt.lf, self.lf + nxt.ll), max(self.fl + nxt.lf, self.ll + nxt.ll))

    def as_tuple(self) -> tuple[int, int, int, int]:
        return self.ff, self.fl, self.lf, self.ll


IDENTITY = Timing(0, NEVER, NEVER, 0)


def chain(parts) -> Timing:
    """Stages in stream order as one Timing (an empty chain passes beats through untouched)."""
    total = IDENTITY
    for part in parts:
        total = total.then(part)
    return total


def single_beat(cycles: int) -> Timing:
    """One beat in, one beat out ``cycles`` later (decision unit, merge)."""
    return Timing.stage(cycles, 0, cycles, 1)


def streaming(cycles: int, beats: int) -> Timing:
    """A register stage on a stream of ``beats`` beats, one a cycle (requant, fork)."""
    return Timing.stage(cycles, beats - 1, cycles, beats)


def compose_arrays(a: tuple, b: tuple) -> tuple:
    """Timing.then on arrays of (ff, fl, lf, ll), one entry per candidate design (the DSE)."""
    aff, afl, alf, all_ = a
    bff, bfl, blf, bll = b
    return (np.maximum(aff + bff, alf + bfl), np.maximum(afl + bff, all_ + bfl),
            np.maximum(aff + blf, alf + bll), np.maximum(afl + blf, all_ + bll))
