"""``training.compile``: the model's forward and backward through ``torch.compile``, with eager as the fallback.

The trainer keeps its eager model (checkpoints, snapshots, the export and every diagnostic use it) and hands the
objective a compiled view of the same module, sharing its parameters. Whether compiling pays depends on how long the
stage runs: the first compile takes tens of seconds on a CPU (a few once Inductor's cache under ``scratch/`` is
warm), and a compiled step is about 1.2x an eager one there (``bench/bench_train.py``).

    cudagraphs  as on, with ``mode="reduce-overhead"`` (CUDA graphs; the batch shape is static): opt-in until it has
          been measured on a GPU
    on    compile, unless the budget left cannot absorb a cold compile (one line says so; the deadline comes first)
    off   eager
    auto  on for CUDA; on a CPU, on when the stage is expected to train for at least ``AUTO_MIN_SECONDS`` (a budget
          that long, or no budget and at least ``AUTO_MIN_STEPS`` steps), off otherwise (a short demo stage loses more
          to the compile than it gains)

A compile that fails (no C++ compiler, an unsupported operation, ...) says so in one line and the step is redone
eagerly, on the same batch, with nothing changed: compile errors surface in the forward or backward, before the
optimiser touches a parameter.
"""
import os
from pathlib import Path

import torch

COLD_COMPILE_S = 60.0          # what the deadline reserves for the first compiled step (measured ~30 s cold on 2 cores)
AUTO_MIN_SECONDS = 600.0
AUTO_MIN_STEPS = 10000


def compile_cache_dir() -> str:
    """Inductor's cache for the kit: ``$KIT_COMPILE_CACHE`` when set, else ``scratch/torch_compile``. A
    ``TORCHINDUCTOR_CACHE_DIR`` the user chose is kept (see ``_use_kit_cache``)."""
    return os.environ.get("KIT_COMPILE_CACHE") or str(Path(__file__).resolve().parents[1] / "scratch" / "torch_compile")


def _use_kit_cache() -> None:
    """Point Inductor at the kit's cache unless the user chose one. Importing torch._dynamo (the optimiser does) already
    fills ``TORCHINDUCTOR_CACHE_DIR`` with torch's default under /tmp, so "not chosen" means unset or that default;
    Inductor reads the variable again at each cache access."""
    current = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    try:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir
        default = os.path.abspath(default_cache_dir())
    except Exception:                  # a torch without that helper: only an unset variable counts as not chosen
        default = None
    if current is None or os.path.abspath(current) == default:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = compile_cache_dir()


def resolve_compile(setting, device: torch.device, budget_s: float = None, max_steps: int = 0):
    """False (eager), True (compile) or "cudagraphs"."""
    choices = {"auto": "auto", "on": True, "off": False, "cudagraphs": "cudagraphs", True: True, False: False}
    if setting not in choices:
        raise ValueError(f"training.compile {setting!r} is unknown: expected auto, on, off or cudagraphs")
    setting = choices[setting]
    if setting != "auto":
        return setting
    if device.type == "cuda":
        return True
    if budget_s is not None:
        return budget_s >= AUTO_MIN_SECONDS
    return max_steps >= AUTO_MIN_STEPS


class CompiledModel:
    """The objective's view of the model: compiled when ``enabled``, the eager model once compiling failed or was
    dropped. ``view()`` is what the step passes to the objective."""

    def __init__(self, model, enabled, log=print):
        self.model, self.log = model, log
        self.compiled, self.failed = None, None
        if enabled:
            _use_kit_cache()
            # Random draws (the reparameterisation, the gates) go through torch's own generator, as in eager mode:
            # the same numbers, so a compiled step matches an eager one and a checkpoint's RNG state resumes it.
            import torch._inductor.config as inductor_config
            inductor_config.fallback_random = True
            # Static shapes (the batch size is fixed); the eager model stays the one that owns the parameters.
            mode = "reduce-overhead" if enabled == "cudagraphs" else None
            self.compiled = torch.compile(model, dynamic=False, mode=mode)
        self.first_step_pending = self.compiled is not None

    @property
    def active(self) -> bool:
        return self.compiled is not None

    def view(self):
        return self.compiled if self.compiled is not None else self.model

    def drop(self, reason: str) -> None:
        """Go eager for the rest of the run, saying why in one line."""
        if self.compiled is not None:
            self.compiled, self.failed = None, reason
            self.first_step_pending = False
            self.log(f"torch.compile: {reason}; training eagerly")

    def failed_with(self, exc: BaseException) -> None:
        from submission.files import first_line
        self.drop(first_line(exc))

    def before_step(self, seconds_left: float) -> None:
        """Before the first compiled step: drop compiling when the time left cannot absorb a cold compile."""
        if self.first_step_pending and seconds_left < COLD_COMPILE_S:
            self.drop(f"{seconds_left:.0f} s of budget left cannot absorb a first compile (up to {COLD_COMPILE_S:.0f} s)")

    def after_step(self, seconds: float) -> None:
        if self.first_step_pending:
            self.first_step_pending = False
            if self.active:
                self.log(f"torch.compile: first step (compiling) took {seconds:.1f} s")

    def state(self) -> str:
        return "compiled" if self.active else ("eager (compile failed)" if self.failed else "eager")
