"""The one trainer for every method: budget, iteration cap, checkpoints, resume, and the deadline guarantee.

It minimises the sum of the objective's named loss terms, never knowing the method. Files, learning rates, batches,
device and precision, the compiled view, the log, divergence and the hooks are their own modules'.

The deadline guarantee (an export of the latest good model exists before the budget ends, whatever happens): an export
is written before the first step and with every checkpoint; the loop stops while the time left still covers a
checkpoint, an export, a margin and a slow step (2x the p90 of recent steps, warm-up left out); a NaN/inf loss, found at
the next boundary (no step waits for the device), rolls back to the last good snapshot at a lower rate; SIGTERM/SIGINT
end the loop after the current step; any other error writes the export from that snapshot before it propagates.
"""
import copy
import os
import signal
import time

import gin
import numpy as np
import torch

from submission import checkpoints, files, hardware
from submission.files import CHECKPOINT_NAME, ArtifactError
from submission.checkpoints import CHECKPOINT_FORMAT
from submission.budget import Deadline
from submission.compiled import CompiledModel, resolve_compile
from submission.divergence import NonFiniteWatch
from submission.learning_rates import LearningRateError, LearningRates
from submission.prefetch import BatchFeed
from submission.schedules import Clock
from submission.training_hooks import Hooks
from submission.training_log import TrainingLog


class TrainingError(ValueError):
    """A bad input to training (a checkpoint that does not fit the recipe, ...): one line for a person."""


@gin.configurable("training", denylist=["model", "objective", "dataset", "output_dir", "seed", "rng", "budget_s",
                                        "start_time", "export_path", "run_info", "hooks"])
class Trainer:
    """Train ``model`` with ``objective`` on ``dataset``; write ``output_dir``/checkpoint.pt, log.jsonl, config.gin.

    ``run()`` resumes from ``output_dir``'s checkpoint when there is one, trains until the iteration cap, the budget,
    a signal or divergence, then writes the final checkpoint and the verified export; it returns a summary dict.
    ``next_batch()`` and ``step()`` are the loop's two halves, public for benchmarks and tests.
    """

    def __init__(self, model, objective, dataset, output_dir: str, seed: int = 0, rng=None, budget_s: float = None,
                 start_time: float = None, export_path: str = None, run_info: dict = None, hooks=(),
                 max_steps: int = 90000, batch_size: int = 64, learning_rate: float = 1e-4,
                 adam_betas=(0.9, 0.999), lr_scheduler: str = None, plateau_factor: float = 0.95,
                 plateau_patience: int = 0, plateau_interval: int = 500, precision: str = "auto",
                 channels_last: str = "auto", device: str = "auto", checkpoint_every_s: float = 60.0,
                 log_every_s: float = 10.0, snapshot_every: int = 200, max_rollbacks: int = 3,
                 rollback_lr_factor: float = 0.5, safety_margin_s: float = 3.0, export_estimate_s: float = 5.0,
                 warmup_steps: int = 3, prefetch="auto", lr_multipliers: dict = None,
                 lr_factor=1.0, progress_span=(0.0, 1.0), compile="auto", weight_decay: float = 0.0,
                 grad_clip: float = None):
        self.budget = Deadline(start_time, budget_s, safety_margin_s, warmup_steps)
        self.start_time, self.deadline = self.budget.start_time, self.budget.at
        self.output_dir, self.export_path = output_dir, export_path
        self.checkpoint_path = os.path.join(output_dir, CHECKPOINT_NAME)
        self._latest_unreadable = False     # set when a resume fell back past a checkpoint.pt that did not load
        self.run_info = dict(run_info or {}, seed=int(seed))
        self.rng = rng if rng is not None else np.random.default_rng(seed)
        self.max_steps, self.batch_size = int(max_steps), int(batch_size)
        self.snapshot_every, self.max_rollbacks = int(snapshot_every), int(max_rollbacks)
        self.rollback_lr_factor, self.checkpoint_every_s = float(rollback_lr_factor), float(checkpoint_every_s)
        span = tuple(float(v) for v in progress_span)
        if len(span) != 2 or not 0.0 <= span[0] <= span[1] <= 1.0:
            raise TrainingError(f"training.progress_span {progress_span!r} is malformed: expected (start, end) with "
                                f"0 <= start <= end <= 1")
        self.progress_span, self.progress_reached = span, span[0]

        try:                                   # every bad setting is one line (TrainingError is a ValueError)
            self.device = hardware.resolve_device(device)
            self.bf16 = hardware.resolve_precision(precision, self.device)
            self.channels_last = hardware.resolve_channels_last(channels_last, self.bf16)
            depth = hardware.resolve_prefetch(prefetch, self.device)
            compiling = resolve_compile(compile, self.device, budget_s, self.max_steps)
            self.model = model.to(self.device, memory_format=torch.channels_last if self.channels_last else None)
            self.objective = objective.to(self.device)
            self.objective.setup(dataset)
            self.rates = LearningRates(self.model, self.objective, learning_rate, adam_betas, lr_multipliers, lr_factor,
                                       lr_scheduler, plateau_factor, plateau_patience, plateau_interval, weight_decay)
        except (LearningRateError, ValueError) as exc:
            raise TrainingError(str(exc)) from None
        self.optimizer, self.grad_clip = self.rates.optimizer, grad_clip   # grad_clip: a max global norm, or None

        self.step_count, self.rollbacks, self.train_seconds, self._stop_signal, self._snapshot = 0, 0, 0.0, None, None
        self.export_seconds, self.save_seconds = (float(export_estimate_s) if export_path else 0.0), 1.0
        self.log = TrainingLog(output_dir, log_every_s)
        self.hooks = Hooks(hooks, log=self.log.line)
        self.batches = BatchFeed(dataset, batch_size, self.rng, self.device, self.channels_last, depth,
                                 log=self.log.line)
        self.compiler = CompiledModel(self.model, compiling, log=self.log.line)   # the objective's view of the model
        self.watch = NonFiniteWatch(self.device)

    # ----------------------------------------------------------------------------------------------- state
    def state_dict(self) -> dict:
        rng = {"torch": torch.get_rng_state(), "numpy": self.rng.bit_generator.state}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {"format": CHECKPOINT_FORMAT, "step": self.step_count, "model_config": self.model.config(),
                "objective": self.objective.name, "gin_config": gin.operative_config_str(),
                "run": self.run_info, "model": self.model.state_dict(),
                "objective_state": self.objective.state_dict(), **self.rates.state_dict(),
                "rollbacks": self.rollbacks, "train_seconds": self.train_seconds,
                "progress": self.progress_reached, "rng": rng}

    def load_state_dict(self, state: dict, restore_rng: bool = True) -> None:
        self.model.load_state_dict(state["model"])
        self.objective.load_state_dict(state["objective_state"])
        self.rates.load_state_dict(state)
        self.step_count = int(state["step"])
        self.rollbacks, self.train_seconds = int(state["rollbacks"]), float(state["train_seconds"])
        self.progress_reached = max(self.progress_reached, float(state.get("progress", 0.0)))
        if restore_rng:
            torch.set_rng_state(state["rng"]["torch"])
            self.rng.bit_generator.state = state["rng"]["numpy"]
            if "cuda" in state["rng"] and self.device.type == "cuda":
                torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
            self.batches.restart()                # batches drawn ahead belong to the old state

    def resume_if_possible(self) -> bool:
        """Continue from the newest readable checkpoint a previous run of this command left (the previous one when the
        latest is damaged, said in one line)."""
        try:
            checkpoint, path, note = checkpoints.load_latest_checkpoint(self.output_dir)
            if checkpoint is None:
                return False
            checkpoints.check_architecture(checkpoint, self.model, path)
        except ArtifactError as exc:
            raise TrainingError(str(exc)) from None
        if note:
            self.log.line(note)
            self._latest_unreadable = True    # the next save replaces it, and never keeps it as the fallback
        if checkpoint.get("objective") != self.objective.name:
            raise TrainingError(f"checkpoint {path} was trained with objective {checkpoint.get('objective')!r}, but the "
                                f"recipe uses {self.objective.name!r}: expected the same method (or a fresh --output)")
        self.load_state_dict(checkpoint)
        self.log.truncate_after(self.step_count)
        self.log.line(f"resuming from {path} at step {self.step_count}")
        return True

    def init_from(self, checkpoint: dict, path: str) -> None:
        """Fine-tuning: start from a pretrained model (and objective state when it is the same method); a checkpoint of
        another architecture is an ArtifactError (a ValueError: one line)."""
        checkpoints.check_architecture(checkpoint, self.model, path)
        self.model.load_state_dict(checkpoint["model"])
        if checkpoint.get("objective") == self.objective.name:
            self.objective.load_state_dict(checkpoint["objective_state"])

    # ----------------------------------------------------------------------------------------------- outputs
    def save_checkpoint(self, state: dict = None) -> None:
        t0 = time.monotonic()
        checkpoints.save_checkpoint(state if state is not None else self.state_dict(), self.checkpoint_path,
                                    keep_previous=not self._latest_unreadable)
        self._latest_unreadable = False
        self.save_seconds = max(time.monotonic() - t0, 0.05)

    def export(self) -> None:
        if self.export_path:
            from .export import export_representation
            t0 = time.monotonic()
            export_representation(self.model, self.export_path)
            self.export_seconds = time.monotonic() - t0

    # ----------------------------------------------------------------------------------------------- time
    def progress(self) -> float:
        """The run's progress: max(step / max_steps, elapsed / budget), mapped into ``progress_span`` (this stage's
        share of the whole job), never lower than a value it already reached (a resumed run does not go back)."""
        start, end = self.progress_span
        self.progress_reached = max(self.progress_reached, start + (end - start) * self._stage_fraction())
        return self.progress_reached

    def clock(self) -> Clock:
        return Clock(self.step_count, self.progress())

    def reserve_s(self) -> float:
        """What must stay in hand at the loop's end: a slow step, a checkpoint, an export and the safety margin."""
        return self.budget.reserve_s(self.save_seconds, self.export_seconds)

    def next_batch(self):
        """The next training batch on the device: (float images NCHW in [0, 1], factors)."""
        return self.batches.next()

    # ----------------------------------------------------------------------------------------------- one step
    def step(self, batch=None):
        """One optimiser step on ``batch`` (default: ``next_batch()``): (loss, terms), tensors on the device. Nothing is
        read back: a non-finite loss is the loop's to find at its next boundary."""
        x, factors = self.next_batch() if batch is None else batch
        clock = self.clock()
        self.rates.before_step(clock)
        compiled = self.compiler.active
        try:
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                terms = self.objective(self.compiler.view(), x, factors, clock)
            loss = sum(terms.values())
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
        except Exception as exc:
            if not compiled:
                raise
            self.compiler.failed_with(exc)       # before the optimiser changed anything: redo this batch eagerly
            return self.step((x, factors))
        if self.grad_clip:                        # on the device: no read-back
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        self.objective.after_step(self.step_count)
        return loss, terms

    def _rollback(self) -> bool:
        """A non-finite loss: restore the last good snapshot with a lower learning rate; False when out of tries."""
        rollbacks, scale = self.rollbacks + 1, self.rates.lr_scale * self.rollback_lr_factor
        giving_up = rollbacks > self.max_rollbacks
        self.log.line(f"non-finite loss at step {self.watch.bad_step}" + (
            f" after {self.max_rollbacks} rollbacks: stopping with the last good model (step {self._snapshot['step']})"
            if giving_up else f": rolling back to step {self._snapshot['step']} with learning rate x{scale:g}"))
        self.load_state_dict(copy.deepcopy(self._snapshot), restore_rng=False)
        self.log.discard_window()               # its sums hold the bad steps
        self.rollbacks = rollbacks
        if not giving_up:
            self.rates.scale(scale)
        return not giving_up

    def _on_signal(self, signum, _frame):
        self._stop_signal = signal.Signals(signum).name

    def _stage_fraction(self) -> float:
        """This stage's own progress: max(step / max_steps, elapsed / budget), at most 1."""
        return min(max(self.step_count / max(self.max_steps, 1), self.budget.elapsed_fraction()), 1.0)

    # ----------------------------------------------------------------------------------------------- the run
    def run(self) -> dict:
        os.makedirs(self.output_dir, exist_ok=True)
        try:
            lock = files.RunLock(self.output_dir, "training run").acquire()
        except ArtifactError as exc:
            raise TrainingError(str(exc)) from None
        with lock:
            export_dir = os.path.dirname(os.path.abspath(self.export_path)) if self.export_path else self.output_dir
            for directory in {self.output_dir, export_dir}:
                files.remove_temporaries(directory)      # left by a killed run's writes (ours: we hold the lock)
            return self._run_locked()

    def _run_locked(self) -> dict:
        self.resume_if_possible()
        files.atomic_write_text(gin.operative_config_str() or gin.config_str(),
                                    os.path.join(self.output_dir, "config.gin"))
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        self.model.train()
        self._snapshot = copy.deepcopy(self.state_dict())
        reason = None
        try:
            self.export()                       # an export exists from the first second on
            self.hooks.call("on_start", self)
            self.batches.start()
            reason = self._loop()
        except BaseException as exc:
            self.batches.stop()
            if not files.is_disk_full(exc):   # a full disk: what is on disk is the last good state; keep it
                self._emergency_export()
            raise
        finally:
            self.batches.stop()
            for s, handler in previous.items():
                signal.signal(s, handler)
            self.log.close_bar()
            self.hooks.call("on_close")
        return self._finish(reason)

    def _stop_reason(self):
        if self._stop_signal:
            self.log.line(f"{self._stop_signal} received at step {self.step_count}: writing the checkpoint and export")
            return f"signal {self._stop_signal}"
        if self.step_count >= self.max_steps:
            return "max_steps"
        if self.budget.time_left() < self.reserve_s():
            return "budget"
        return None

    def _loop(self) -> str:
        self.log.open_bar(self.max_steps, self.step_count)
        last_checkpoint = last_progress = time.monotonic()
        while True:
            reason = self._stop_reason()
            if reason and self.watch.take() is not None and not self._rollback():   # never end on a diverged model
                return "diverged"
            if reason and not (reason == "max_steps" and self.step_count < self.max_steps):   # (unless rolled back)
                return reason
            self.compiler.before_step(self.budget.time_left() - self.reserve_s())
            t0 = time.monotonic()
            loss, terms = self.step()
            self.compiler.after_step(time.monotonic() - t0)
            self.step_count += 1
            self.watch.add(self.step_count, loss)
            dt = time.monotonic() - t0
            self.train_seconds += dt
            self.budget.record_step_time(dt)
            self.log.add(terms, loss, self.objective.kl_per_dim())
            self.rates.after_step(loss)
            now = time.monotonic()
            log_due, checkpoint_due = self.log.due(now, self.step_count == self.max_steps), \
                now - last_checkpoint >= self.checkpoint_every_s
            if log_due or checkpoint_due or self.step_count % self.snapshot_every == 0:   # a boundary
                if self.watch.take() is not None:
                    if not self._rollback():
                        return "diverged"
                    continue
                self._snapshot = copy.deepcopy(self.state_dict())     # checked: the new last good state
            if log_due:
                head = {**self.rates.rates(), "progress": round(self.progress_reached, 5)}
                record = self.log.close_window(now, self.step_count, now - self.start_time, head,
                                               self.objective.diagnostics())
                self.hooks.call("on_log", record)
            if now - last_progress >= 5.0:
                self.hooks.call("on_progress", self._stage_fraction())
                last_progress = now
            if checkpoint_due:
                self.save_checkpoint(self._snapshot)
                self.export()
                self.hooks.call("on_checkpoint", self)
                last_checkpoint = time.monotonic()

    def _emergency_export(self) -> None:
        """An unexpected error: write the last good snapshot and its export before the error propagates."""
        if self._snapshot is None:
            return
        try:
            self.load_state_dict(copy.deepcopy(self._snapshot), restore_rng=False)
            self.save_checkpoint(self._snapshot)
            self.export()
            self.log.line(f"error during training: wrote the last good model (step {self._snapshot['step']})")
        except Exception as exc:  # the original error matters more
            self.log.line(f"could not write the last good model ({type(exc).__name__}: {exc})")

    def _finish(self, reason: str) -> dict:
        self.save_checkpoint()
        self.export()
        self.hooks.call("on_progress", self._stage_fraction())
        summary = {"stopped": reason, "step": self.step_count, "train_seconds": round(self.train_seconds, 2),
                   "elapsed_s": round(time.monotonic() - self.start_time, 2), "rollbacks": self.rollbacks,
                   "export": self.export_path, **self.objective.diagnostics()}
        self.log.write({"event": "finished", **summary})
        self.log.line(f"training stopped ({reason}) at step {self.step_count}; checkpoint {self.checkpoint_path}"
                      + (f"; export {self.export_path}" if self.export_path else ""))
        return summary
