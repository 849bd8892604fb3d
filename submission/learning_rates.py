"""The optimiser and its learning rates: parameter groups, schedules, a torch scheduler, and the rollback scale.

Each group's rate is ``learning_rate × rollback scale × lr_factor(clock) × the group's multiplier(clock)``, where
``lr_factor`` and the multipliers are numbers or schedules (``submission.schedules``), or the rate is left to one
``torch.optim.lr_scheduler`` (``TorchLRSchedule``, or "plateau": the β-TCVAE entry's ReduceLROnPlateau on the mean loss).
"""
import torch

from submission.schedules import Clock, TorchLRSchedule, value_at


class LearningRateError(ValueError):
    """A bad learning-rate setting: one line for a person."""


def parameter_groups(model, objective, lr_multipliers: dict = None) -> list:
    """Adam parameter groups, as (name, multiplier, parameters): every trainable parameter in group "base" (multiplier
    1), except those whose qualified name (``model.gate.log_alpha``, ``objective.…``) contains a key of
    ``lr_multipliers``: they form a group named by that key, at lr × its multiplier (a number or a schedule). PVAE's
    gates use this: Adam moves a parameter by about lr per step, so at lr 1e-4 a gate needs >5·10⁴ steps to close; its
    own rate lets it close within a run while the network keeps the recipe's rate, and a schedule holds it at 0 while
    the dimensions learn."""
    multipliers = dict(lr_multipliers or {})
    groups, matched = {"base": (1.0, [])}, set()
    for prefix, module in (("model", model), ("objective", objective)):
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            qualified = f"{prefix}.{name}"
            key = next((k for k in multipliers if k in qualified), None)
            if key is None:
                groups["base"][1].append(param)
            else:
                matched.add(key)
                groups.setdefault(key, (multipliers[key], []))[1].append(param)
    unmatched = sorted(set(multipliers) - matched)
    if unmatched:
        raise LearningRateError(f"training.lr_multipliers names {unmatched}, which match no trainable parameter: "
                                f"expected parts of names such as 'model.gate.log_alpha'")
    return [(name, factor, params) for name, (factor, params) in groups.items() if params]


def _torch_schedule(lr_scheduler, plateau_factor, plateau_patience, plateau_interval):
    if lr_scheduler == "plateau":
        return TorchLRSchedule("ReduceLROnPlateau", every=plateau_interval, factor=plateau_factor,
                               patience=plateau_patience)
    if lr_scheduler is not None and not isinstance(lr_scheduler, TorchLRSchedule):
        raise LearningRateError(f"training.lr_scheduler {lr_scheduler!r} is unknown: expected None, 'plateau' or "
                                f"@TorchLRSchedule() (any torch.optim.lr_scheduler class)")
    return lr_scheduler


class LearningRates:
    """Owns the Adam optimiser; ``before_step(clock)`` sets scheduled rates, ``after_step(loss)`` steps a torch
    scheduler, ``scale(factor)`` lowers every rate after a rollback."""

    def __init__(self, model, objective, learning_rate: float, adam_betas=(0.9, 0.999), lr_multipliers=None,
                 lr_factor=1.0, lr_scheduler=None, plateau_factor=0.95, plateau_patience=0, plateau_interval=500,
                 weight_decay: float = 0.0):
        groups = parameter_groups(model, objective, lr_multipliers)
        self.base_lr, self.lr_factor, self.lr_scale = float(learning_rate), lr_factor, 1.0
        self.group_factors = [factor for _, factor, _ in groups]
        start = Clock(0, 0.0)
        # Decoupled weight decay (AdamW, Loshchilov & Hutter 2019) when asked for (QLAE's recipe); plain Adam otherwise.
        optimizer, extra = (torch.optim.AdamW, {"weight_decay": float(weight_decay)}) if weight_decay else \
            (torch.optim.Adam, {})
        self.optimizer = optimizer(
            [{"params": params, "name": name,
              "lr": self.base_lr * value_at(factor, start) * value_at(lr_factor, start)}
             for name, factor, params in groups], betas=tuple(adam_betas), **extra)
        self.scheduled = callable(lr_factor) or any(callable(f) for f in self.group_factors)
        self.torch_schedule = _torch_schedule(lr_scheduler, plateau_factor, plateau_patience, plateau_interval)
        if self.torch_schedule is not None and self.scheduled:
            raise LearningRateError("training.lr_scheduler and a learning-rate schedule (training.lr_factor or a "
                                    "schedule in training.lr_multipliers) would both set the learning rate: expected "
                                    "one of them")
        self.scheduler = None if self.torch_schedule is None else self.torch_schedule.attach(self.optimizer)

    def before_step(self, clock: Clock) -> None:
        if not self.scheduled:
            return
        factor = self.base_lr * self.lr_scale * value_at(self.lr_factor, clock)
        for group, multiplier in zip(self.optimizer.param_groups, self.group_factors):
            group["lr"] = factor * value_at(multiplier, clock)

    def after_step(self, loss) -> None:
        """``loss``: the step's loss (a tensor), kept on the device: a torch schedule reads its losses in one go."""
        if self.torch_schedule is not None:
            self.torch_schedule.step(loss.detach())

    def scale(self, new_scale: float) -> None:
        """Set the rollback scale: every rate moves by new_scale / the current scale."""
        for group in self.optimizer.param_groups:
            group["lr"] *= new_scale / self.lr_scale
        self.lr_scale = float(new_scale)

    def rates(self) -> dict:
        """{"lr": the base group's rate, "lr/<group>": each other group's}."""
        groups = self.optimizer.param_groups
        return {"lr": groups[0]["lr"], **{f"lr/{g.get('name', i)}": g["lr"] for i, g in enumerate(groups) if i}}

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(),
                "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
                "lr_scale": self.lr_scale,
                "lr_schedule_pending": [] if self.torch_schedule is None else self.torch_schedule.pending_values()}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.lr_scale = float(state["lr_scale"])
        if self.torch_schedule is not None:
            self.torch_schedule.pending = list(state.get("lr_schedule_pending", []))
