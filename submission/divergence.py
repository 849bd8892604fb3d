"""Non-finite losses, found without making a step wait for the device.

Each step folds "was this loss finite?" into one integer on the device (the first bad step since the last check, or -1);
the trainer takes it once at each boundary (a log window, a snapshot, a checkpoint, the end of the loop), and only then
rolls back. A bad step's update is applied like any other, so a rollback undoes at most the steps since the last check,
which is also the last snapshot: the same bound as checking every step.
"""
import torch


class NonFiniteWatch:
    def __init__(self, device):
        self.device, self.bad_step = device, None
        self.reset()

    def reset(self) -> None:
        self._first_bad = torch.full((), -1, dtype=torch.long, device=self.device)

    def add(self, step: int, loss) -> None:
        """Note step ``step``'s loss: stays on the device."""
        bad = ~torch.isfinite(loss.detach()) & (self._first_bad < 0)
        self._first_bad = torch.where(bad, torch.full_like(self._first_bad, step), self._first_bad)

    def take(self):
        """At a boundary: the first step since the last take whose loss was not finite (also kept as ``bad_step``),
        or None; one read-back."""
        first = int(self._first_bad)
        self.bad_step = None if first < 0 else first
        self.reset()
        return self.bad_step
