"""Beat-exact timing: the edge of every beat through each module, from the timing rules its
header states, and the worst-case latency of a whole design from them.

``eehw.hw.timing`` bounds a stage by its first and last beats (a 2x2 max-plus matrix), which
composes cheaply for the DSE's thousands of candidates but must assume the worst about the
beats in between: behind a stage that stalls its upstream, it takes the whole sample as a
burst at the end (fmnist_cnn's baseline: 4,041 cycles against 2,463 measured). Here each
module is run over the actual edges of its input beats instead, so a folded MVU works through
its windows as they come. The modules keep their state from one sample to the next, since a
sample sent as soon as the previous result is out can find earlier stages still busy with that
sample's trailing work (pixels no window reads, vectors no pool keeps).

Each model takes the edges its input beats are offered at and returns the edges they are taken
at and the edges its output beats are offered at, as if its output were always taken: a stage
that stalls its upstream is modelled where it stalls it (a sliding window and the MVU it feeds
are one model), and the random-model property test checks the result against the simulated
worst case of 200 designs, cycle for cycle. Backpressure between other modules (a full FIFO
holding up the stage before it) is not modelled: had it delayed a result, the simulation would
measure more than stated and the flow would stop on it (eehw.hw.measure), as it stops on any
broken figure.
"""

from __future__ import annotations

from eehw.hw.stages import DwcStage, MvuStage, PoolStage, WindowStage

NEVER = -(1 << 40)  # "not yet" / "no dependence" (minus infinity, kept an integer)


class _Model:
    """A module's state between beats: the edges named in ``_times``."""

    _times: tuple[str, ...] = ()

    def state(self, offset: int) -> tuple:
        """The state relative to ``offset``: equal states at two samples' offers mean the
        design repeats from there on."""
        out = []
        for name in self._times:
            value = getattr(self, name)
            for v in value if isinstance(value, list) else [value]:
                out.append(None if v <= NEVER // 2 else v - offset)
        return tuple(out)


class Register(_Model):
    """requant.v, axis_fifo.v, axis_fork.v: one register, one beat a cycle (a FIFO is one
    cycle on its first and last beat when empty)."""

    _times = ("last",)

    def __init__(self, latency: int = 1):
        self.latency, self.last = latency, NEVER

    def feed(self, offers: list[int]) -> tuple[list[int], list[int]]:
        outs = []
        for a in offers:
            self.last = max(a + self.latency, self.last + 1)
            outs.append(self.last)
        return list(offers), outs


class Mvu(_Model):
    """mvu.v: NF = 1 takes every beat as it comes and sends a vector 4 cycles after its last
    beat; NF > 1 takes a vector into a free bank of two (a bank is freed II cycles after its
    vector's compute starts), starts computing once the vector is in and the previous one is
    done, and sends it II + 3 cycles after the start (L_last = II + 4 on an idle unit)."""

    _times = ("taken", "computed", "last")

    def __init__(self, m: MvuStage):
        self.sf = m.in_n // m.folding.simd
        self.nf = m.out_n // m.folding.pe
        self.ii = m.vector_ii
        self.positions = m.positions
        self.taken, self.computed, self.last = NEVER, [NEVER, NEVER], NEVER

    def take(self, offer) -> tuple[list[int], int]:
        """One vector, beat j offered at ``offer(j, earliest)`` (``earliest``: one cycle after
        the previous beat was taken); its beats' edges and its output's."""
        free = self.computed[0] + self.ii if self.nf > 1 else NEVER
        taken = []
        for j in range(self.sf):
            self.taken = max(offer(j, self.taken + 1), self.taken + 1, free)
            taken.append(self.taken)
        if self.nf == 1:
            self.last = max(self.taken + 4, self.last + 1)
        else:
            start = max(self.taken + 1, self.computed[1] + self.ii)
            self.computed = [self.computed[1], start]
            self.last = start + self.ii + 3
        return taken, self.last

    def feed(self, offers: list[int]) -> tuple[list[int], list[int]]:
        taken, outs = [], []
        for v in range(self.positions):
            t, out = self.take(lambda j, _earliest, v=v: offers[v * self.sf + j])
            taken += t
            outs.append(out)
        return taken, outs


class Window(_Model):
    """sliding_window.v, and the MVU it feeds when there is one (each waits on the other): the
    scan walks the padded map one step a cycle, takes a real pixel no earlier than it is offered
    (its skid takes the next beat the cycle after the previous one is consumed), waits at a
    window position until the previous window's last beat has left (NB = 1: at every step while
    the window is held), and runs from one sample into the next; step 0 waits for the sample's
    first beat."""

    _times = ("step", "held_until", "last_beat", "consumed")

    def __init__(self, w: WindowStage, m: MvuStage | None = None):
        self.mvu = Mvu(m) if m is not None else None
        self.steps = w.scan_steps
        self.wins = set(w.window_steps)
        self.nb = w.window // w.simd
        self.real = w.pixel_steps
        self.step, self.held_until, self.last_beat, self.consumed = NEVER, NEVER, NEVER, NEVER

    def state(self, offset: int) -> tuple:
        return super().state(offset) + (self.mvu.state(offset) if self.mvu else ())

    def feed(self, offers: list[int]) -> tuple[list[int], list[int]]:
        pixel, taken, outs = 0, [], []
        for step in range(self.steps):
            t = max(self.step + 1, self.held_until, offers[0] if step == 0 else NEVER)
            real = pixel < len(self.real) and step == self.real[pixel]
            if real:
                taken.append(max(offers[pixel], self.consumed + 1))
                t = max(t, offers[pixel])
            if step in self.wins:
                t = max(t, self.last_beat)  # the step loads the window once the previous one has left
            if real:
                self.consumed = t
                pixel += 1
            self.step = t
            if step not in self.wins:
                continue
            if self.mvu is None:
                beats = [t + 1 + j for j in range(self.nb)]
                outs += beats
            else:
                beats, out = self.mvu.take(lambda j, earliest, t=t: t + 1 if j == 0 else earliest)
                outs.append(out)
            self.last_beat = beats[-1]
            self.held_until = beats[-1] if self.nb == 1 else NEVER
        return taken, outs


class Pool(_Model):
    """maxpool.v: one beat a cycle; each fold of a pooled pixel leaves the cycle after the same
    fold of its window's last pixel."""

    def __init__(self, p: PoolStage):
        kh = p.k if p.dims == 2 else 1
        out_h, out_w = p.out_hw
        self.sources = [
            ((oh * kh + kh - 1) * p.width + ow * p.k + p.k - 1) * p.fold + f
            for oh in range(out_h)
            for ow in range(out_w)
            for f in range(p.fold)
        ]

    def feed(self, offers: list[int]) -> tuple[list[int], list[int]]:
        return list(offers), [offers[i] + 1 for i in self.sources]


class Dwc(_Model):
    """dwc.v: splitting takes a beat every R cycles and sends its R parts one a cycle from the
    next; gathering sends R beats as one the cycle after the R-th."""

    _times = ("taken",)

    def __init__(self, d: DwcStage):
        self.split = d.in_n > d.out_n
        self.r = d.in_n // d.out_n if self.split else d.out_n // d.in_n
        self.taken = NEVER

    def feed(self, offers: list[int]) -> tuple[list[int], list[int]]:
        if not self.split:
            return list(offers), [offers[i + self.r - 1] + 1 for i in range(0, len(offers), self.r)]
        taken, outs = [], []
        for a in offers:
            self.taken = max(a, self.taken + self.r)
            taken.append(self.taken)
            outs += [self.taken + 1 + k for k in range(self.r)]
        return taken, outs


class ExitGate(_Model):
    """exit_gate.v forwarding a sample: its first feature beat the cycle after the decision, one
    a cycle, none before the cycle after it entered the buffer (a head whose pool drops trailing
    pixels decides before the block's last beats are in), and none before the previous sample's
    last beat has left."""

    _times = ("last",)

    def __init__(self):
        self.last = NEVER

    def forward(self, buffered: list[int], decision: int) -> list[int]:
        outs, t = [], max(decision, self.last)
        for b in buffered:
            t = max(t + 1, b + 1)
            outs.append(t)
        self.last = t
        return outs


def window_pairs(stages) -> list[tuple[int, object, MvuStage | None]]:
    """(index, stage, the MVU it feeds) for each timed unit of a chain: a sliding window and the
    MVU right after it are one unit (each waits on the other), every other stage is its own."""
    stages, units, i = list(stages), [], 0
    while i < len(stages):
        s = stages[i]
        pair = isinstance(s, WindowStage) and i + 1 < len(stages) and isinstance(stages[i + 1], MvuStage)
        units.append((i, s, stages[i + 1] if pair else None))
        i += 2 if pair else 1
    return units


class Chain(_Model):
    """Stages in stream order, a sliding window and the MVU right after it as one model."""

    def __init__(self, stages):
        self.models = []
        for _, s, mvu in window_pairs(stages):
            if isinstance(s, WindowStage):
                self.models.append(Window(s, mvu))
            elif isinstance(s, MvuStage):
                self.models.append(Mvu(s))
            elif isinstance(s, PoolStage):
                self.models.append(Pool(s))
            elif isinstance(s, DwcStage):
                self.models.append(Dwc(s))
            else:
                self.models.append(Register())

    def state(self, offset: int) -> tuple:
        return tuple(m.state(offset) for m in self.models)

    def feed(self, offers: list[int]) -> tuple[list[int], list[int]]:
        taken = None
        for m in self.models:
            t, offers = m.feed(offers)
            taken = t if taken is None else taken
        return (taken if taken is not None else list(offers)), offers
