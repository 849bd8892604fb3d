"""Schedules: small objects that map where a run is to a number (beta, capacity C, the L0 weight, a learning-rate
factor), plus a wrapper that turns any ``torch.optim.lr_scheduler`` class into an object the trainer calls once per step.

Where a run is, is a ``Clock``: the step, and the run's **progress** ``max(step / max_steps, elapsed / budget)`` in
[0, 1] (mapped into the stage's share of the whole job, see ``Trainer.progress_span``). Every schedule counts in one unit,
``unit = "steps"`` (the default) or ``unit = "progress"``; with progress, ``steps``, ``delay`` and ``period`` are
fractions of the run. A recipe written against progress follows the same curriculum in a 4-minute CPU demo and in an
8-hour GPU run.

An objective takes either a float or a schedule for each weight; ``value_at`` reads both, so a recipe switches from a
constant to an annealed weight with one gin line, e.g. ``Composite.beta = @Cyclical()``.
"""
import dataclasses
import math

import gin
import torch

UNITS = ("steps", "progress")


@dataclasses.dataclass(frozen=True)
class Clock:
    """Where a run is: the optimiser step, and the progress in [0, 1] (see the module docstring)."""
    step: int
    progress: float = 0.0


def clock_of(t) -> Clock:
    """A Clock from a Clock or a bare step number (progress 0: tests and tools that only know the step)."""
    return t if isinstance(t, Clock) else Clock(int(t), 0.0)


def _check_unit(unit: str, owner: str) -> str:
    if unit not in UNITS:
        raise ValueError(f"{owner}.unit {unit!r} is unknown: expected 'steps' or 'progress'")
    return unit


class LinearRamp:
    """start -> end linearly over ``steps`` (of its unit), then constant at ``end``."""

    unit = "steps"

    def __init__(self, start: float, end: float, steps: float):
        self.start, self.end, self.steps = float(start), float(end), float(steps)

    def __call__(self, t: float) -> float:
        if self.steps <= 0:
            return self.end if t >= 0 else self.start
        return self.start + (self.end - self.start) * min(max(t, 0) / self.steps, 1.0)


def value_at(weight, t) -> float:
    """A constant weight, or a schedule evaluated at the clock ``t`` (a Clock or a step number) in its own unit."""
    if not callable(weight):
        return float(weight)
    clock = clock_of(t)
    return float(weight(clock.progress if getattr(weight, "unit", "steps") == "progress" else clock.step))


@gin.configurable
class Constant:
    def __init__(self, value: float = 1.0):
        self.value = float(value)

    def __call__(self, t: float) -> float:
        return self.value


@gin.configurable
class Linear(LinearRamp):
    """start -> end linearly over ``steps`` after ``delay`` at ``start`` (controlled capacity increase,
    Burgess et al. 2018, sec. 4: C rises linearly from 0; VSC's sharpness warm-up, Tonolini et al. 2020, sec. 3.3;
    a warm-up that holds a weight at 0 for the first ``delay`` of the run)."""

    def __init__(self, start: float = 0.0, end: float = 1.0, steps: float = 10000, delay: float = 0,
                 unit: str = "steps"):
        super().__init__(start, end, steps)
        if steps < 0 or delay < 0:
            raise ValueError(f"Linear schedule steps={steps}, delay={delay}: expected both >= 0")
        self.delay, self.unit = float(delay), _check_unit(unit, "Linear")

    def __call__(self, t: float) -> float:
        return super().__call__(t - self.delay)


@gin.configurable
class Cosine:
    """start -> end along a half cosine over ``steps`` after ``delay`` at ``start``, then ``end`` (the usual cosine
    learning-rate decay, Loshchilov & Hutter 2017, eq. 5, without restarts)."""

    def __init__(self, start: float = 1.0, end: float = 0.1, steps: float = 1.0, delay: float = 0.0,
                 unit: str = "progress"):
        if steps <= 0 or delay < 0:
            raise ValueError(f"Cosine schedule steps={steps}, delay={delay}: expected steps > 0 and delay >= 0")
        self.start, self.end, self.steps, self.delay = float(start), float(end), float(steps), float(delay)
        self.unit = _check_unit(unit, "Cosine")

    def __call__(self, t: float) -> float:
        fraction = min(max(t - self.delay, 0.0) / self.steps, 1.0)
        return self.end + (self.start - self.end) * 0.5 * (1.0 + math.cos(math.pi * fraction))


@gin.configurable
class Cyclical:
    """Cyclical annealing (Fu et al. 2019, "Cyclical annealing schedule", eq. 5): in each cycle of ``period`` steps the
    value rises linearly from ``start`` to ``end`` over the first ``ratio`` of the cycle, then stays at ``end``."""

    def __init__(self, start: float = 0.0, end: float = 1.0, period: float = 10000, ratio: float = 0.5,
                 unit: str = "steps"):
        if period <= 0 or not 0.0 < ratio <= 1.0:
            raise ValueError(f"Cyclical schedule period={period}, ratio={ratio}: expected period > 0, 0 < ratio <= 1")
        self.start, self.end, self.period, self.ratio = float(start), float(end), float(period), float(ratio)
        self.unit = _check_unit(unit, "Cyclical")

    def __call__(self, t: float) -> float:
        phase = (max(t, 0) % self.period) / (self.period * self.ratio)
        return self.start + (self.end - self.start) * min(phase, 1.0)


@gin.configurable
class Exponential:
    """start * decay ** (step / steps), floored at ``minimum`` (e.g. a reconstruction weight that decays)."""

    def __init__(self, start: float = 1.0, decay: float = 0.5, steps: float = 10000, minimum: float = 0.0,
                 unit: str = "steps"):
        if steps <= 0 or decay <= 0:
            raise ValueError(f"Exponential schedule decay={decay}, steps={steps}: expected both > 0")
        self.start, self.decay, self.steps, self.minimum = float(start), float(decay), float(steps), float(minimum)
        self.unit = _check_unit(unit, "Exponential")

    def __call__(self, t: float) -> float:
        return max(self.start * math.exp(math.log(self.decay) * max(t, 0) / self.steps), self.minimum)


@gin.configurable
class TorchLRSchedule:
    """Any ``torch.optim.lr_scheduler`` class by name, with its keyword arguments, behind two calls:

        schedule.attach(optimizer)   once, after the optimiser exists; returns the torch scheduler (for state_dict)
        schedule.step(loss)          once per training step; ReduceLROnPlateau gets the loss, the others nothing

    ``every`` steps the scheduler once per that many training steps (ReduceLROnPlateau then sees the mean loss).
    """

    def __init__(self, name: str = "ReduceLROnPlateau", every: int = 1, **kwargs):
        scheduler_class = getattr(torch.optim.lr_scheduler, name, None)
        if not (isinstance(scheduler_class, type) and issubclass(scheduler_class, torch.optim.lr_scheduler.LRScheduler)
                or name == "ReduceLROnPlateau"):
            raise ValueError(f"learning-rate scheduler {name!r} is not in torch.optim.lr_scheduler: expected a class "
                             f"name such as 'StepLR', 'CosineAnnealingLR' or 'ReduceLROnPlateau'")
        if every <= 0:
            raise ValueError(f"TorchLRSchedule.every={every}: expected a positive number of steps")
        self.name, self.every, self.kwargs = name, int(every), dict(kwargs)
        self.scheduler, self.pending = None, []   # pending: losses since the last scheduler step (checkpointed)

    def attach(self, optimizer):
        self.scheduler = getattr(torch.optim.lr_scheduler, self.name)(optimizer, **self.kwargs)
        return self.scheduler

    def step(self, loss=None) -> None:
        """``loss``: the step's loss, a float or a tensor; a tensor stays on its device until ``every`` steps are in,
        then all of them are read back at once (a step never waits for the device)."""
        if self.scheduler is None:
            raise RuntimeError("TorchLRSchedule.step was called before attach(optimizer)")
        self.pending.append(float("nan") if loss is None else loss)
        if len(self.pending) < self.every:
            return
        if self.name == "ReduceLROnPlateau":
            if any(isinstance(v, float) and math.isnan(v) for v in self.pending):
                raise ValueError("ReduceLROnPlateau needs the loss: call TorchLRSchedule.step(loss)")
            self.scheduler.step(_stacked(self.pending).mean().item())
        else:
            self.scheduler.step()
        self.pending = []

    def pending_values(self) -> list:
        """The losses since the scheduler's last step, as floats (one read-back for all of them): for checkpoints."""
        return _stacked(self.pending).tolist() if self.pending else []


def _stacked(values) -> torch.Tensor:
    """Floats and 0-d tensors as one fp32 tensor on the tensors' device (no read-back)."""
    device = next((v.device for v in values if isinstance(v, torch.Tensor)), None)
    return torch.stack([torch.as_tensor(v, dtype=torch.float32, device=device).reshape(()) for v in values])
