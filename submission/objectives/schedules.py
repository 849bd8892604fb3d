"""Schedules are small objects, not branches in an objective."""


class LinearRamp:
    """start -> end linearly over ``steps`` steps, then constant at ``end``."""

    def __init__(self, start: float, end: float, steps: int):
        self.start, self.end, self.steps = float(start), float(end), int(steps)

    def __call__(self, step: int) -> float:
        if self.steps <= 0:
            return self.end
        return self.start + (self.end - self.start) * min(max(step, 0) / self.steps, 1.0)
