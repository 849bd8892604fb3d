"""The one trainer for every method: budget, iteration cap, checkpoints, resume, and the deadline guarantee.

It never knows which method it runs: it asks the objective for named loss terms and minimises their sum.

The deadline guarantee: an export of the latest good model exists before the budget ends, whatever happens.
  * an export is written (and verified) before the first step and with every periodic checkpoint;
  * the loop stops while the time left still covers one more checkpoint + export, a safety margin and a slow step
    (2x the 90th percentile of the last 20 step times, leaving out each process's first few warm-up steps);
  * a NaN/inf loss rolls back to the last good in-memory snapshot with a lower learning rate (or stops after too many);
  * SIGTERM/SIGINT stop the loop at the end of the current step; the final checkpoint + export are still written;
  * any other error writes the export from the last good snapshot before it propagates.
Checkpoints hold only tensors and primitive containers, so they load with ``torch.load(..., weights_only=True)``.

Batches are drawn one or two ahead by a background thread (``training.prefetch``) from a private copy of the trainer's
numpy generator, in order; each consumed batch sets ``self.rng`` to the state that draws the next one, so a checkpoint
resumes exactly as without prefetching.
"""
import copy
import json
import math
import os
import queue
import signal
import sys
import threading
import time

import gin
import numpy as np
import torch

from submission.schedules import Clock, TorchLRSchedule, value_at

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_FORMAT = 1
# A latent dimension counts in a log record's ``kl_active_dims`` when its mean KL over the window exceeds this (nats).
KL_ACTIVE_NATS = 0.1


class TrainingError(ValueError):
    """A bad input to training (a checkpoint that does not fit the recipe, ...): one line for a person."""


def seed_everything(seed: int) -> np.random.Generator:
    """Seed torch and return the numpy generator that draws the training batches."""
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def atomic_save(obj, path: str) -> None:
    """torch.save to a temporary file beside ``path``, then rename: a reader never sees half a file."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_text(text: str, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def load_checkpoint(path: str) -> dict:
    """Load a checkpoint on the CPU (weights only); a missing or unreadable file is a TrainingError naming it."""
    if not os.path.isfile(path):
        raise TrainingError(f"checkpoint {path} does not exist: expected a file written by the trainer")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise TrainingError(f"checkpoint {path} is unreadable ({type(exc).__name__}): expected a trainer "
                            f"checkpoint") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise TrainingError(f"checkpoint {path} has no format {CHECKPOINT_FORMAT} header: expected a file written by "
                            f"the trainer")
    return checkpoint


def check_architecture(checkpoint: dict, model, path: str) -> None:
    """The checkpoint's architecture must equal the one the recipe builds."""
    found, expected = checkpoint.get("model_config"), model.config()
    if found != expected:
        raise TrainingError(f"checkpoint {path} holds architecture {json.dumps(found, sort_keys=True)}, but the recipe "
                            f"builds {json.dumps(expected, sort_keys=True)}: expected the same model")


def _cpu_has_fast_bf16() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
        return "amx_bf16" in flags or "avx512_bf16" in flags
    except OSError:
        return False


def _clone(tree):
    """Deep copy of a state tree, tensors detached and cloned."""
    if isinstance(tree, torch.Tensor):
        return tree.detach().clone()
    if isinstance(tree, dict):
        return {k: _clone(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_clone(v) for v in tree)
    return copy.deepcopy(tree)


class BatchPrefetcher:
    """Draws ``dataset.sample_batch(batch_size, rng)`` in a background thread, up to ``depth`` batches ahead.

    The thread draws from its own copy of ``rng`` (the trainer's generator is only written by the consumer), in order,
    and hands each batch over with the generator state from after its draw, i.e. the state that draws the next batch.
    ``prepare`` (e.g. uint8 -> float on the CPU) also runs in the thread. An error in the thread is raised by ``get``.
    """

    def __init__(self, dataset, batch_size: int, rng: np.random.Generator, depth: int = 2, prepare=None):
        self.dataset, self.batch_size, self.prepare = dataset, int(batch_size), prepare
        self._rng = copy.deepcopy(rng)
        self._queue = queue.Queue(maxsize=max(int(depth), 1))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="batch-prefetch", daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _work(self) -> None:
        try:
            while not self._stop.is_set():
                batch = self.dataset.sample_batch(self.batch_size, self._rng)
                if self.prepare is not None:
                    batch = self.prepare(*batch)
                if not self._put((batch, self._rng.bit_generator.state, None)):
                    return
        except BaseException as exc:     # handed to the consumer, raised there
            self._put((None, None, exc))

    def get(self):
        """(batch, the generator state that draws the batch after it); waits for the thread when it is behind."""
        while True:
            try:
                batch, next_state, error = self._queue.get(timeout=0.5)
                break
            except queue.Empty:
                if not self._thread.is_alive():
                    raise RuntimeError("the batch prefetch thread stopped without a batch") from None
        if error is not None:
            raise error
        return batch, next_state

    def close(self, timeout: float = 2.0) -> bool:
        """Stop the thread; True when it has exited (a draw in progress is finished, then dropped)."""
        self._stop.set()
        while True:                       # unblock a put waiting on a full queue
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout)
        return not self._thread.is_alive()


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
        raise TrainingError(f"training.lr_multipliers names {unmatched}, which match no trainable parameter: "
                            f"expected parts of names such as 'model.gate.log_alpha'")
    return [(name, factor, params) for name, (factor, params) in groups.items() if params]


@gin.configurable("training", denylist=["model", "objective", "dataset", "output_dir", "seed", "rng", "budget_s",
                                        "start_time", "export_path", "run_info"])
class Trainer:
    """Train ``model`` with ``objective`` on ``dataset``; write ``output_dir``/checkpoint.pt, log.jsonl, config.gin.

    ``run()`` resumes from ``output_dir``/checkpoint.pt when it exists, trains until the iteration cap, the budget,
    a signal or divergence, then writes the final checkpoint and the verified export; it returns a summary dict.
    """

    def __init__(self, model, objective, dataset, output_dir: str, seed: int = 0, rng=None, budget_s: float = None,
                 start_time: float = None, export_path: str = None, run_info: dict = None,
                 max_steps: int = 90000, batch_size: int = 64, learning_rate: float = 1e-4,
                 adam_betas=(0.9, 0.999), lr_scheduler: str = None, plateau_factor: float = 0.95,
                 plateau_patience: int = 0, plateau_interval: int = 500, precision: str = "auto",
                 channels_last: str = "auto", device: str = "auto", checkpoint_every_s: float = 60.0,
                 log_every_s: float = 10.0, snapshot_every: int = 200, max_rollbacks: int = 3,
                 rollback_lr_factor: float = 0.5, safety_margin_s: float = 3.0, export_estimate_s: float = 5.0,
                 warmup_steps: int = 3, prefetch: int = 2, tensorboard: bool = False, lr_multipliers: dict = None,
                 lr_factor=1.0, progress_span=(0.0, 1.0)):
        self.start_time = time.monotonic() if start_time is None else start_time
        self.deadline = None if budget_s is None else self.start_time + float(budget_s)
        self.budget_s = budget_s
        self.output_dir, self.export_path = output_dir, export_path
        self.checkpoint_path = os.path.join(output_dir, CHECKPOINT_NAME)
        self.run_info = dict(run_info or {}, seed=int(seed))
        self.rng = rng if rng is not None else np.random.default_rng(seed)
        self.max_steps, self.batch_size = int(max_steps), int(batch_size)
        self.snapshot_every, self.max_rollbacks = int(snapshot_every), int(max_rollbacks)
        self.rollback_lr_factor, self.plateau_interval = float(rollback_lr_factor), int(plateau_interval)
        self.checkpoint_every_s, self.log_every_s = float(checkpoint_every_s), float(log_every_s)
        self.safety_margin_s = float(safety_margin_s) + (0.01 * float(budget_s) if budget_s else 0.0)

        self.device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                                   ("cpu" if device == "auto" else device))
        fast_bf16 = (torch.cuda.is_bf16_supported() if self.device.type == "cuda" else _cpu_has_fast_bf16())
        self.bf16 = {"auto": fast_bf16, "bf16": True, "fp32": False}[precision]
        self.channels_last = {"auto": self.bf16, "on": True, "off": False, True: True, False: False}[channels_last]

        self.model = model.to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.objective = objective.to(self.device)
        self.objective.setup(dataset)
        self.dataset = dataset
        groups = parameter_groups(self.model, self.objective, lr_multipliers)
        self.group_factors = [factor for _, factor, _ in groups]
        self.lr_factor = lr_factor
        self.base_lr = float(learning_rate)
        self.optimizer = torch.optim.Adam(
            [{"params": params, "name": name, "lr": self.base_lr * value_at(factor, 0) * value_at(lr_factor, 0)}
             for name, factor, params in groups], betas=tuple(adam_betas))
        span = tuple(float(v) for v in progress_span)
        if len(span) != 2 or not 0.0 <= span[0] <= span[1] <= 1.0:
            raise TrainingError(f"training.progress_span {progress_span!r} is malformed: expected (start, end) with "
                                f"0 <= start <= end <= 1")
        self.progress_span, self.progress_reached = span, span[0]
        self.scheduled_lr = callable(lr_factor) or any(callable(f) for f in self.group_factors)
        if lr_scheduler == "plateau":  # the β-TCVAE entry's shorthand: ReduceLROnPlateau on the mean loss
            lr_scheduler = TorchLRSchedule("ReduceLROnPlateau", every=plateau_interval, factor=plateau_factor,
                                           patience=plateau_patience)
        elif lr_scheduler is not None and not isinstance(lr_scheduler, TorchLRSchedule):
            raise TrainingError(f"training.lr_scheduler {lr_scheduler!r} is unknown: expected None, 'plateau' or "
                                f"@TorchLRSchedule() (any torch.optim.lr_scheduler class)")
        if lr_scheduler is not None and self.scheduled_lr:
            raise TrainingError("training.lr_scheduler and a learning-rate schedule (training.lr_factor or a schedule in "
                                "training.lr_multipliers) would both set the learning rate: expected one of them")
        self.lr_schedule = lr_scheduler
        self.scheduler = None if lr_scheduler is None else lr_scheduler.attach(self.optimizer)

        self.step, self.lr_scale, self.rollbacks, self.train_seconds = 0, 1.0, 0, 0.0
        self.export_seconds = float(export_estimate_s) if export_path else 0.0
        self.save_seconds = 1.0
        self.warmup_steps = int(warmup_steps)
        self.step_times = []              # seconds per step after this process's warm-up steps (the last 50)
        self.warmup_times = []            # this process's first ``warmup_steps`` step times
        self.prefetch = 2 if prefetch is True else int(prefetch or 0)
        self.tensorboard = bool(tensorboard)
        self._prefetcher = None
        self._board, self._board_images, self._board_seconds = None, None, 0.0
        self._stop_signal = None
        self._snapshot = None
        self._bar = None

    # ----------------------------------------------------------------------------------------------- state
    def state_dict(self) -> dict:
        rng = {"torch": torch.get_rng_state(), "numpy": self.rng.bit_generator.state}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {"format": CHECKPOINT_FORMAT, "step": self.step, "model_config": self.model.config(),
                "objective": self.objective.name, "gin_config": gin.operative_config_str(),
                "run": self.run_info, "model": self.model.state_dict(),
                "objective_state": self.objective.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
                "lr_scale": self.lr_scale, "rollbacks": self.rollbacks, "train_seconds": self.train_seconds,
                "progress": self.progress_reached,
                "lr_schedule_pending": [] if self.lr_schedule is None else list(self.lr_schedule.pending),
                "rng": rng}

    def load_state_dict(self, state: dict, restore_rng: bool = True) -> None:
        self.model.load_state_dict(state["model"])
        self.objective.load_state_dict(state["objective_state"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.lr_scale = int(state["step"]), float(state["lr_scale"])
        self.rollbacks, self.train_seconds = int(state["rollbacks"]), float(state["train_seconds"])
        self.progress_reached = max(self.progress_reached, float(state.get("progress", 0.0)))
        if self.lr_schedule is not None:
            self.lr_schedule.pending = list(state.get("lr_schedule_pending", []))
        if restore_rng:
            torch.set_rng_state(state["rng"]["torch"])
            self.rng.bit_generator.state = state["rng"]["numpy"]
            if "cuda" in state["rng"] and self.device.type == "cuda":
                torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
            if self._prefetcher is not None:      # batches drawn ahead belong to the old state
                self.stop_prefetch()
                self.start_prefetch()

    def resume_if_possible(self) -> bool:
        """Continue from ``output_dir``/checkpoint.pt when a previous run of this command left one."""
        if not os.path.exists(self.checkpoint_path):
            return False
        checkpoint = load_checkpoint(self.checkpoint_path)
        check_architecture(checkpoint, self.model, self.checkpoint_path)
        if checkpoint.get("objective") != self.objective.name:
            raise TrainingError(f"checkpoint {self.checkpoint_path} was trained with objective "
                                f"{checkpoint.get('objective')!r}, but the recipe uses {self.objective.name!r}: "
                                f"expected the same method (or a fresh --output)")
        self.load_state_dict(checkpoint)
        self._log_line(f"resuming from {self.checkpoint_path} at step {self.step}")
        return True

    def init_from(self, checkpoint: dict, path: str) -> None:
        """Fine-tuning: start from a pretrained model (and objective state when it is the same method)."""
        check_architecture(checkpoint, self.model, path)
        self.model.load_state_dict(checkpoint["model"])
        if checkpoint.get("objective") == self.objective.name:
            self.objective.load_state_dict(checkpoint["objective_state"])

    # ----------------------------------------------------------------------------------------------- outputs
    def save_checkpoint(self, state: dict = None) -> None:
        t0 = time.monotonic()
        atomic_save(state if state is not None else self.state_dict(), self.checkpoint_path)
        self.save_seconds = max(time.monotonic() - t0, 0.05)

    def export(self) -> None:
        if not self.export_path:
            return
        from .export import export_representation
        t0 = time.monotonic()
        export_representation(self.model, self.export_path)
        self.export_seconds = time.monotonic() - t0

    def _write_log(self, record: dict) -> None:
        with open(os.path.join(self.output_dir, "log.jsonl"), "a") as f:
            f.write(json.dumps(record) + "\n")

    def _log_line(self, text: str) -> None:
        if self._bar is not None and self._bar.mode == "tty":
            from tqdm import tqdm
            tqdm.write(text, file=sys.stderr)          # above the bar, which stays intact
        else:
            print(text, file=sys.stderr, flush=True)

    def _board_call(self, method: str, *args) -> None:
        """A TensorBoard write; a failure turns TensorBoard off with one line, it never stops training."""
        if self._board is None:
            return
        try:
            getattr(self._board, method)(*args)
        except Exception as exc:
            self._log_line(f"tensorboard: logging off ({type(exc).__name__}: {exc})")
            board, self._board = self._board, None
            try:
                board.close()
            except Exception:
                pass

    # ----------------------------------------------------------------------------------------------- time
    def progress(self) -> float:
        """The run's progress: max(step / max_steps, elapsed / budget), mapped into ``progress_span`` (this stage's
        share of the whole job), never lower than a value it already reached (a resumed run does not go back)."""
        raw = self.step / max(self.max_steps, 1)
        if self.deadline is not None and self.budget_s:
            raw = max(raw, (time.monotonic() - self.start_time) / float(self.budget_s))
        start, end = self.progress_span
        self.progress_reached = max(self.progress_reached, start + (end - start) * min(raw, 1.0))
        return self.progress_reached

    def clock(self) -> Clock:
        return Clock(self.step, self.progress())

    def _apply_lr_schedule(self, clock: Clock) -> None:
        """Scheduled learning rates: each group at base lr × rollback scale × its multiplier × ``lr_factor``."""
        factor = self.base_lr * self.lr_scale * value_at(self.lr_factor, clock)
        for group, multiplier in zip(self.optimizer.param_groups, self.group_factors):
            group["lr"] = factor * value_at(multiplier, clock)

    def time_left(self) -> float:
        return math.inf if self.deadline is None else self.deadline - time.monotonic()

    def slow_step_s(self) -> float:
        """A pessimistic step time: 2x the 90th percentile of the last 20 steps after the warm-up steps.

        Each process's first steps are slow for reasons that do not recur (lazy dataset tables, autocast and oneDNN
        warm-up), so they are left out; until a later step exists, it is 2x the fastest warm-up step, but at most
        max(1 s, 10% of the budget), so one slow first step cannot end a short run.
        """
        recent = sorted(self.step_times[-20:])
        if recent:
            return 2.0 * recent[min(int(math.ceil(0.9 * len(recent))) - 1, len(recent) - 1)]
        if self.warmup_times:
            return min(2.0 * min(self.warmup_times), max(1.0, 0.1 * float(self.budget_s or 0.0)))
        return 1.0

    def reserve_s(self) -> float:
        """What must stay in hand at the loop's end: a slow step, a checkpoint, an export and the safety margin."""
        return self.slow_step_s() + self.save_seconds + self.export_seconds + self.safety_margin_s

    def _record_step_time(self, dt: float) -> None:
        if len(self.warmup_times) < self.warmup_steps:
            self.warmup_times.append(dt)
        else:
            self.step_times = (self.step_times + [dt])[-50:]

    # ----------------------------------------------------------------------------------------------- loop
    def _prepare_on_host(self, images, factors):
        """The host half of a batch's preparation, run in the prefetch thread: float [0, 1] on the CPU, else pinned."""
        if self.device.type == "cpu":
            x = images.float().div_(255.0)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            return x, factors
        return images.pin_memory(), factors.pin_memory()

    def _to_device(self, images, factors):
        x = images.to(self.device, non_blocking=True)
        if not x.is_floating_point():
            x = x.float().div_(255.0)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, factors.to(self.device, non_blocking=True)

    def start_prefetch(self) -> None:
        """Draw batches ahead in a background thread from now on (when ``prefetch`` > 0)."""
        if self.prefetch > 0 and self._prefetcher is None:
            self._prefetcher = BatchPrefetcher(self.dataset, self.batch_size, self.rng, self.prefetch,
                                               self._prepare_on_host)

    def stop_prefetch(self) -> None:
        """Stop the prefetch thread; ``self.rng`` already holds the state of the next unconsumed batch."""
        prefetcher, self._prefetcher = self._prefetcher, None
        if prefetcher is not None and not prefetcher.close():
            self._log_line("the batch prefetch thread is still drawing a batch; it stops after that draw")

    def _next_batch(self):
        if self._prefetcher is not None:
            (images, factors), next_state = self._prefetcher.get()
            self.rng.bit_generator.state = next_state      # the checkpoint's state draws the next unconsumed batch
        else:
            images, factors = self.dataset.sample_batch(self.batch_size, self.rng)
        return self._to_device(images, factors)

    def _train_step(self):
        x, factors = self._next_batch()
        clock = self.clock()
        if self.scheduled_lr:
            self._apply_lr_schedule(clock)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            terms = self.objective(self.model, x, factors, clock)
        loss = sum(terms.values())
        if not torch.isfinite(loss):
            return None, terms
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.objective.after_step(self.step)
        return loss, terms

    def _rollback(self, terms) -> bool:
        """A non-finite loss: restore the last good snapshot with a lower learning rate; False when out of tries."""
        self.rollbacks += 1
        bad = {k: float(v.detach()) for k, v in terms.items()}
        if self.rollbacks > self.max_rollbacks:
            self._log_line(f"non-finite loss at step {self.step} ({bad}) after {self.max_rollbacks} rollbacks: "
                           f"stopping with the last good model (step {self._snapshot['step']})")
            self.load_state_dict(_clone(self._snapshot), restore_rng=False)
            return False
        scale = self.lr_scale * self.rollback_lr_factor
        self._log_line(f"non-finite loss at step {self.step} ({bad}): rolling back to step {self._snapshot['step']} "
                       f"with learning rate x{scale:g}")
        rollbacks, snapshot_scale = self.rollbacks, float(self._snapshot["lr_scale"])
        self.load_state_dict(_clone(self._snapshot), restore_rng=False)
        self.rollbacks, self.lr_scale = rollbacks, scale
        for group in self.optimizer.param_groups:
            group["lr"] *= scale / snapshot_scale
        return True

    def _take_snapshot(self) -> None:
        self._snapshot = _clone(self.state_dict())

    def _on_signal(self, signum, frame):
        self._stop_signal = signal.Signals(signum).name

    def _report_progress(self) -> None:
        fractions = [self.step / max(self.max_steps, 1)]
        if self.deadline is not None and self.budget_s:
            fractions.append(1.0 - max(self.time_left(), 0.0) / float(self.budget_s))
        try:
            from aicrowd_helpers import register_progress
        except ImportError:
            return
        register_progress(min(max(fractions), 1.0))

    def _open_board(self) -> None:
        """TensorBoard (``training.tensorboard``): scalars of every log record, images with every checkpoint."""
        if not self.tensorboard:
            return
        try:
            from .visualize import TensorBoardLogger     # pulls in TensorFlow's tensorboard: only when asked for
            self._board = TensorBoardLogger(os.path.join(self.output_dir, "tensorboard"), enabled=True)
        except Exception as exc:                         # pictures are optional; training is not
            self._log_line(f"tensorboard: logging off ({type(exc).__name__}: {exc})")
            self._board = None
        if self._board is None or not self._board.enabled:
            self._board = None
            return
        # Its own generator: the training batches stay the same with TensorBoard on or off.
        self._board_images = self.dataset.sample_batch(8, np.random.default_rng(12345))[0].float() / 255

    def _close_board(self) -> None:
        board, self._board = self._board, None
        if board is not None:
            try:
                board.close()
            except Exception as exc:
                self._log_line(f"tensorboard: could not close ({type(exc).__name__}: {exc})")

    def _board_log_images(self) -> None:
        """Images after a checkpoint, when the time left covers them on top of the end-of-run reserve."""
        if self._board is None or self.time_left() - self.reserve_s() < 2.0 * self._board_seconds + 1.0:
            return
        t0 = time.monotonic()
        self._board_call("log_images", self.step, self.model, self._board_images)
        self.model.train()
        self._board_seconds = time.monotonic() - t0

    def run(self) -> dict:
        os.makedirs(self.output_dir, exist_ok=True)
        self._bar = None
        self.resume_if_possible()
        atomic_write_text(gin.operative_config_str() or gin.config_str(), os.path.join(self.output_dir, "config.gin"))
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        self.model.train()
        self._take_snapshot()
        reason = None
        try:
            self.export()                       # an export exists from the first second on
            self._open_board()
            self.start_prefetch()
            reason = self._loop()
        except BaseException:
            self.stop_prefetch()
            self._emergency_export()
            raise
        finally:
            self.stop_prefetch()
            for s, handler in previous.items():
                signal.signal(s, handler)
            if self._bar is not None:
                self._bar.close()
                self._bar = None
            self._close_board()
        return self._finish(reason)

    def _loop(self) -> str:
        from .progress import progress
        self._bar = progress(self.max_steps, "train", unit="steps")
        self._bar.update_to(self.step)
        last_checkpoint = last_log = last_progress = time.monotonic()
        window, window_steps, window_start = {}, 0, time.monotonic()
        window_kl = None
        while True:
            if self._stop_signal:
                self._log_line(f"{self._stop_signal} received at step {self.step}: writing the checkpoint and export")
                return f"signal {self._stop_signal}"
            if self.step >= self.max_steps:
                return "max_steps"
            if self.time_left() < self.reserve_s():
                return "budget"
            t0 = time.monotonic()
            loss, terms = self._train_step()
            if loss is None:
                if not self._rollback(terms):
                    return "diverged"
                continue
            self.step += 1
            dt = time.monotonic() - t0
            self.train_seconds += dt
            self._record_step_time(dt)
            loss_value = float(loss.detach())
            for name, value in terms.items():
                window[name] = window.get(name, 0.0) + float(value.detach())
            window["loss"] = window.get("loss", 0.0) + loss_value
            kl = self.objective.kl_per_dim()
            if kl is not None:                  # summed on the device; read once per log record
                window_kl = kl.clone() if window_kl is None or window_kl.shape != kl.shape else window_kl.add_(kl)
            window_steps += 1
            if self.lr_schedule is not None:
                self.lr_schedule.step(loss_value)
            if self.step % self.snapshot_every == 0:
                self._take_snapshot()
            self._bar.update(1)
            now = time.monotonic()
            if now - last_log >= self.log_every_s or self.step == self.max_steps:
                record = self._log_record(now, window, window_steps, window_start, window_kl)
                self._write_log(record)
                self._board_call("log_record", record)
                numbers = {k: v for k, v in record.items() if isinstance(v, float) and k not in ("lr", "elapsed_s")}
                if self._bar.mode == "tty":
                    self._bar.set_postfix(**dict(list(numbers.items())[:6]))
                elif self._bar.mode == "plain":
                    summary = " ".join(f"{k}={v:.4g}" for k, v in numbers.items())
                    self._log_line(f"step {self.step}/{self.max_steps} {summary}")
                window, window_steps, window_start, last_log, window_kl = {}, 0, now, now, None
            if now - last_progress >= 5.0:
                self._report_progress()
                last_progress = now
            if now - last_checkpoint >= self.checkpoint_every_s:
                self._take_snapshot()
                self.save_checkpoint(self._snapshot)
                self.export()
                self._board_log_images()
                last_checkpoint = time.monotonic()

    def _log_record(self, now, window, window_steps, window_start, window_kl) -> dict:
        """One log.jsonl record: the window's mean loss terms, learning rate, KL per dimension, the diagnostics."""
        record = {"step": self.step, "elapsed_s": round(now - self.start_time, 2),
                  "it_per_s": round(window_steps / max(now - window_start, 1e-9), 3),
                  "lr": self.optimizer.param_groups[0]["lr"], "progress": round(self.progress_reached, 5),
                  **{f"lr/{g.get('name', i)}": g["lr"] for i, g in enumerate(self.optimizer.param_groups) if i},
                  **{k: v / window_steps for k, v in window.items()}}
        if window_kl is not None:
            kl = (window_kl / window_steps).tolist()
            record["kl_per_dim"] = [round(v, 6) for v in kl]
            record["kl_active_dims"] = sum(v > KL_ACTIVE_NATS for v in kl)
        record.update(self.objective.diagnostics())
        return record

    def _emergency_export(self) -> None:
        """An unexpected error: write the last good snapshot and its export before the error propagates."""
        if self._snapshot is None:
            return
        try:
            self.load_state_dict(_clone(self._snapshot), restore_rng=False)
            self.save_checkpoint(self._snapshot)
            self.export()
            self._log_line(f"error during training: wrote the last good model (step {self._snapshot['step']})")
        except Exception as exc:  # the original error matters more
            self._log_line(f"could not write the last good model ({type(exc).__name__}: {exc})")

    def _finish(self, reason: str) -> dict:
        self.save_checkpoint()
        self.export()
        self._report_progress()
        summary = {"stopped": reason, "step": self.step, "train_seconds": round(self.train_seconds, 2),
                   "elapsed_s": round(time.monotonic() - self.start_time, 2), "rollbacks": self.rollbacks,
                   "export": self.export_path, **self.objective.diagnostics()}
        self._write_log({"event": "finished", **summary})
        self._log_line(f"training stopped ({reason}) at step {self.step}; checkpoint {self.checkpoint_path}"
                       + (f"; export {self.export_path}" if self.export_path else ""))
        return summary
