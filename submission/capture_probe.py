"""Which factors the model has captured so far, measured while it trains: a training hook.

Every ``every_steps`` steps (at the first log record past each multiple) the probe encodes a fixed set of
``num_samples`` images (drawn once, with its own seed: training's random streams are untouched) with the model's
deterministic representation, in eval mode and fp32 as the export computes it, and scores each factor as
``submission.metrics.factor_capture`` does (its best code's normalised MI, captured at 0.2). It appends a
``{"event": "capture", "step", "capture_nmi", "captured", "seconds"}`` record to ``log.jsonl`` and prints one line:

    step 4000: captured 3 of 7 (camera_height 1.00, background_colour .97, first_dof .31) in 2.1 s

2,000 images keep a probe to about a second (0.8-0.9 s for the standard encoder on one thread of a Zen 4 core: under
1% of the training time at the default interval); the plug-in MI's upward bias is then about .05 for a 40-valued
factor and .01 for a 6-valued one, so the probe's last figures run a little above the 10,000-sample capture a study
records at the end.

A probe that would eat into the time the trainer keeps for its final checkpoint and export is skipped, with one line.
``capture_probe.every_steps = 0`` turns it off.
"""
import time

import gin
import numpy as np
import torch

from submission.training_hooks import TrainingHook

CAPTURE_EVENT = "capture"
FIRST_PROBE_ESTIMATE_S = 10.0   # before the first probe has timed itself


@gin.configurable("capture_probe", denylist=["dataset"])
class CaptureProbe(TrainingHook):
    def __init__(self, dataset, every_steps: int = 2000, num_samples: int = 2000, seed: int = 0,
                 chunk: int = 256):
        if int(every_steps) < 0 or int(num_samples) < 2:
            raise ValueError(f"capture_probe needs every_steps >= 0 and num_samples >= 2, got {every_steps} and "
                             f"{num_samples}")
        self.dataset, self.every, self.num_samples = dataset, int(every_steps), int(num_samples)
        self.seed, self.chunk = int(seed), int(chunk)
        self.trainer, self.factors, self.next_step, self.seconds = None, None, None, None
        self.names = list(getattr(dataset, "factor_names", None) or [])

    def on_start(self, trainer) -> None:
        if self.every <= 0:
            return
        self.trainer = trainer
        self.next_step = (trainer.step_count // self.every + 1) * self.every
        self.factors = self.dataset.sample_factors(self.num_samples, np.random.RandomState(self.seed))

    def on_log(self, record: dict) -> None:
        if self.trainer is None or record.get("step", 0) < self.next_step:
            return
        step = int(record["step"])
        self.next_step = (step // self.every + 1) * self.every
        trainer = self.trainer
        spare = trainer.budget.time_left() - trainer.reserve_s()
        if spare < 3.0 * (self.seconds if self.seconds is not None else FIRST_PROBE_ESTIMATE_S):
            trainer.log.line(f"step {step}: capture probe skipped ({spare:.0f} s left before the final checkpoint)")
            return
        result = self.measure()
        trainer.log.write({"event": CAPTURE_EVENT, "step": step, **result})
        trainer.log.line(f"step {step}: {describe(result)} in {result['seconds']:.1f} s")

    @torch.no_grad()
    def measure(self) -> dict:
        """This model's capture on the probe's images: {"capture_nmi", "captured", "captured_factors", "seconds"}."""
        from submission.checkpoints import RepresentationModule
        from submission.metrics.captured import factor_capture
        t0 = time.monotonic()
        model = self.trainer.model
        was_training = model.training
        model.eval()
        try:
            module, device = RepresentationModule(model), self.trainer.device
            codes, random_state = [], np.random.RandomState(self.seed + 1)
            for start in range(0, self.num_samples, self.chunk):
                images = self.dataset.sample_observations_from_factors(self.factors[start:start + self.chunk],
                                                                       random_state)
                x = torch.from_numpy(np.ascontiguousarray(np.moveaxis(images, -1, 1), dtype=np.float32))
                codes.append(module(x.to(device)).float().cpu().numpy())
        finally:
            model.train(was_training)
        capture = factor_capture(np.concatenate(codes), self.factors, self.names or None)
        self.seconds = time.monotonic() - t0
        return {"capture_nmi": capture["capture_nmi"], "captured": capture["captured"],
                "captured_factors": capture["captured_factors"], "seconds": round(self.seconds, 2)}


def describe(result: dict) -> str:
    """'captured 3 of 7 (camera_height 1.00, first_dof .31)': the captured factors with their normalised MI."""
    nmi = result["capture_nmi"]
    listed = ", ".join(f"{name} {_short(nmi[name])}" for name in result["captured"])
    return f"captured {len(result['captured'])} of {len(nmi)}" + (f" ({listed})" if listed else "")


def _short(value: float) -> str:
    return f"{value:.2f}".lstrip("0") if value < 1 else f"{value:.2f}"


def capture_curve(log_path: str) -> list:
    """The probe's records of a run's ``log.jsonl``, in step order: [{"step", "capture_nmi", "captured"}, ...]."""
    from submission.training_log import read_log
    records = [r for r in read_log(log_path)[0] if r.get("event") == CAPTURE_EVENT]
    return [{"step": r["step"], "capture_nmi": r["capture_nmi"], "captured": r["captured"]}
            for r in sorted(records, key=lambda r: r["step"])]
