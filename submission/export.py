"""TorchScript export of a model's representation, written atomically and verified by reloading it.

The module maps float32 (N, 3, 64, 64) in [0, 1] to float32 (N, D): the model's deterministic ``representation``.
It is traced from an fp32 CPU copy in eval mode, so a model trained on a GPU or in bf16 loads and runs on a CPU.
"""
import copy
import os

import torch
from torch import nn

from submission.checkpoints import RepresentationModule
from submission import files


class ExportError(RuntimeError):
    """The exported module does not reproduce the in-memory model."""


def _probe_batches(channels: int):
    generator = torch.Generator().manual_seed(1234)
    # The evaluator's batch sizes (16 and 64) and an odd one, so a batch size baked into the trace shows up.
    return [torch.rand(n, channels, 64, 64, generator=generator) for n in (16, 64, 3)]


def cpu_fp32_copy(model) -> nn.Module:
    return copy.deepcopy(model).to("cpu", memory_format=torch.contiguous_format).float().eval()


def export_representation(model, path: str, atol: float = 1e-4, rtol: float = 1e-4) -> str:
    """Trace, save to a temporary file, reload it and compare its outputs with the model's, then rename into place.

    Raises ExportError (and leaves any previous export in place) when the reloaded module disagrees; the file is written
    with ``files.atomic_write``, so a kill or a full disk leaves the previous export whole."""
    reference = cpu_fp32_copy(model)
    module = RepresentationModule(reference).eval()
    channels = getattr(reference, "channels", 3)
    probes = _probe_batches(channels)
    with torch.no_grad():
        traced = torch.jit.trace(module, probes[0], check_trace=False)
    return files.atomic_write(path, lambda f: torch.jit.save(traced, f),
                        check=lambda tmp: verify_export(tmp, model, probes, atol, rtol))


def verify_export(path: str, model, probes=None, atol: float = 1e-4, rtol: float = 1e-4) -> None:
    """Reload ``path`` on the CPU and check that it passes the TorchScript check every loader applies, and its shape,
    dtype, determinism and agreement with ``model``."""
    from submission.torchscript_check import UnsafeTorchScript, check_torchscript
    try:
        check_torchscript(path)
    except UnsafeTorchScript as exc:
        raise ExportError(str(exc)) from None
    loaded = torch.jit.load(path, map_location="cpu")
    was_training = model.training
    model.eval()
    try:
        probes = probes or _probe_batches(getattr(model, "channels", 3))
        device = next(model.parameters()).device
        for x in probes:
            with torch.no_grad():
                got = loaded(x)
                again = loaded(x)
                expected = model.representation(x.to(device)).float().cpu()
            if got.dtype != torch.float32 or got.shape != (x.shape[0], model.latent_dim):
                raise ExportError(f"export {path} returns {got.dtype} {tuple(got.shape)} for a batch of {x.shape[0]}: "
                                  f"expected float32 ({x.shape[0]}, {model.latent_dim})")
            if not torch.equal(got, again):
                raise ExportError(f"export {path} is not deterministic: two calls on the same batch differ")
            if not torch.allclose(got, expected, atol=atol, rtol=rtol):
                worst = float((got - expected).abs().max())
                raise ExportError(f"export {path} differs from the in-memory model by up to {worst:.3g} on a batch of "
                                  f"{x.shape[0]}: expected agreement within {atol:g}")
    finally:
        model.train(was_training)


def verify_export_of_run(path: str, run_dir: str) -> int:
    """Check that the export at ``path`` reproduces the run's latest checkpoint, or else the previous one (a kill
    between a checkpoint and its export leaves the export one checkpoint behind; the next run rewrites it before its
    first step). Returns the matching checkpoint's step; raises ExportError when neither matches."""
    from submission.files import PREVIOUS_CHECKPOINT_NAME
    from submission.checkpoints import load_checkpoint, load_latest_checkpoint, model_from_checkpoint
    latest, latest_path, _ = load_latest_checkpoint(run_dir)
    candidates = [(latest, latest_path)]
    previous_path = os.path.join(run_dir, PREVIOUS_CHECKPOINT_NAME)
    if latest_path != previous_path and os.path.exists(previous_path):
        candidates.append((load_checkpoint(previous_path), previous_path))
    problems = []
    for checkpoint, where in candidates:
        try:
            verify_export(path, model_from_checkpoint(checkpoint, where))
            return int(checkpoint["step"])
        except ExportError as exc:
            problems.append(str(exc))
    raise ExportError(f"export {path} matches neither of the run's last two checkpoints ({problems[0]})")
