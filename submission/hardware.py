"""Where and in which number format to train: the device, the CPU's flags, bf16 or fp32, channels-last.

bf16 autocast pays on CPUs with a bf16 dot-product unit (AMX ``amx_bf16``, or AVX-512 ``avx512_bf16``: about 2x fp32 on
the kit's network); elsewhere it is emulated and about 3x *slower*, so ``auto`` picks it only where the flags say so.
``KIT_PRECISION=fp32|bf16`` forces a choice for every ``auto`` in the process (the suite runs under both).
"""
import os

import torch

PRECISIONS = ("auto", "fp32", "bf16")


def cpu_flags() -> frozenset:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_fast_bf16(flags=None) -> bool:
    flags = cpu_flags() if flags is None else flags
    return "amx_bf16" in flags or "avx512_bf16" in flags


def cpu_summary(flags=None) -> str:
    """One line for benchmark output: AMX or not, AVX-512 bf16 or not."""
    flags = cpu_flags() if flags is None else flags
    return (f"AMX {'yes' if 'amx_bf16' in flags else 'no'}, avx512_bf16 {'yes' if 'avx512_bf16' in flags else 'no'}, "
            f"{os.cpu_count()} CPUs")


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_precision(precision: str, device: torch.device) -> bool:
    """True for bf16 autocast. ``auto``: ``$KIT_PRECISION`` when set, else bf16 where the hardware runs it fast."""
    if precision not in PRECISIONS:
        raise ValueError(f"training.precision {precision!r} is unknown: expected one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        forced = os.environ.get("KIT_PRECISION", "").strip().lower()
        if forced and forced not in PRECISIONS:
            raise ValueError(f"KIT_PRECISION={forced!r} is unknown: expected fp32, bf16 or auto")
        precision = forced or "auto"
    if precision == "auto":
        return torch.cuda.is_bf16_supported() if device.type == "cuda" else cpu_has_fast_bf16()
    return precision == "bf16"


def resolve_channels_last(channels_last, bf16: bool) -> bool:
    choices = {"auto": bf16, "on": True, "off": False, True: True, False: False}
    if channels_last not in choices:
        raise ValueError(f"training.channels_last {channels_last!r} is unknown: expected auto, on or off")
    return choices[channels_last]


def resolve_prefetch(prefetch, device: torch.device) -> int:
    """How many batches the background thread draws ahead (0: inline). ``auto``: 2 on CUDA (the CPU is idle while the
    GPU computes), inline on a CPU, where the thread takes cycles from the step's own threads: measured on 2 cores,
    inline ran at 89-99 % of the bare step and prefetch at 80-93 % (README, "Benchmarks")."""
    if prefetch == "auto":
        return 2 if device.type == "cuda" else 0
    if prefetch is True:
        return 2
    try:
        depth = int(prefetch or 0)
    except (TypeError, ValueError):
        depth = -1
    if depth < 0:
        raise ValueError(f"training.prefetch {prefetch!r} is unknown: expected auto or a number of batches >= 0")
    return depth


def seed_everything(seed: int):
    """Seed torch and return the numpy generator that draws the training batches."""
    import numpy as np
    torch.manual_seed(seed)
    return np.random.default_rng(seed)
