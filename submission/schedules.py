"""Schedules: small objects that map the training step to a number (beta, capacity C, reconstruction weight), plus a
wrapper that turns any ``torch.optim.lr_scheduler`` class into an object the trainer calls once per step.

An objective takes either a float or a schedule for each weight; ``value_at`` reads both, so a recipe switches from a
constant to an annealed weight with one gin line, e.g. ``Composite.beta = @Cyclical()``.
"""
import math

import gin
import torch


class LinearRamp:
    """start -> end linearly over ``steps`` steps, then constant at ``end``."""

    def __init__(self, start: float, end: float, steps: int):
        self.start, self.end, self.steps = float(start), float(end), int(steps)

    def __call__(self, step: int) -> float:
        if self.steps <= 0:
            return self.end
        return self.start + (self.end - self.start) * min(max(step, 0) / self.steps, 1.0)


def value_at(weight, step: int) -> float:
    """A constant weight, or a schedule evaluated at ``step``."""
    return float(weight(step)) if callable(weight) else float(weight)


@gin.configurable
class Constant:
    def __init__(self, value: float = 1.0):
        self.value = float(value)

    def __call__(self, step: int) -> float:
        return self.value


@gin.configurable
class Linear(LinearRamp):
    """start -> end linearly over ``steps`` steps after ``delay`` steps at ``start`` (controlled capacity increase,
    Burgess et al. 2018, sec. 4: C rises linearly from 0; VSC's sharpness warm-up, Tonolini et al. 2020, sec. 3.3)."""

    def __init__(self, start: float = 0.0, end: float = 1.0, steps: int = 10000, delay: int = 0):
        super().__init__(start, end, steps)
        if steps < 0 or delay < 0:
            raise ValueError(f"Linear schedule steps={steps}, delay={delay}: expected both >= 0")
        self.delay = int(delay)

    def __call__(self, step: int) -> float:
        return super().__call__(step - self.delay)


@gin.configurable
class Cyclical:
    """Cyclical annealing (Fu et al. 2019, "Cyclical annealing schedule", eq. 5): in each cycle of ``period`` steps the
    value rises linearly from ``start`` to ``end`` over the first ``ratio`` of the cycle, then stays at ``end``."""

    def __init__(self, start: float = 0.0, end: float = 1.0, period: int = 10000, ratio: float = 0.5):
        if period <= 0 or not 0.0 < ratio <= 1.0:
            raise ValueError(f"Cyclical schedule period={period}, ratio={ratio}: expected period > 0, 0 < ratio <= 1")
        self.start, self.end, self.period, self.ratio = float(start), float(end), int(period), float(ratio)

    def __call__(self, step: int) -> float:
        phase = (max(step, 0) % self.period) / (self.period * self.ratio)
        return self.start + (self.end - self.start) * min(phase, 1.0)


@gin.configurable
class Exponential:
    """start * decay ** (step / steps), floored at ``minimum`` (e.g. a reconstruction weight that decays)."""

    def __init__(self, start: float = 1.0, decay: float = 0.5, steps: int = 10000, minimum: float = 0.0):
        if steps <= 0 or decay <= 0:
            raise ValueError(f"Exponential schedule decay={decay}, steps={steps}: expected both > 0")
        self.start, self.decay, self.steps, self.minimum = float(start), float(decay), int(steps), float(minimum)

    def __call__(self, step: int) -> float:
        return max(self.start * math.exp(math.log(self.decay) * max(step, 0) / self.steps), self.minimum)


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

    def step(self, loss: float = None) -> None:
        if self.scheduler is None:
            raise RuntimeError("TorchLRSchedule.step was called before attach(optimizer)")
        self.pending.append(float("nan") if loss is None else float(loss))
        if len(self.pending) < self.every:
            return
        if self.name == "ReduceLROnPlateau":
            if any(math.isnan(v) for v in self.pending):
                raise ValueError("ReduceLROnPlateau needs the loss: call TorchLRSchedule.step(loss)")
            self.scheduler.step(sum(self.pending) / len(self.pending))
        else:
            self.scheduler.step()
        self.pending = []
