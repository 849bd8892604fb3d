"""The representation under test: loading it, and calling it the way the challenge's evaluator did.

The challenge's evaluator received NHWC arrays in [0, 1] from disentanglement_lib, moved the axes to NCHW with
``np.moveaxis``, cast to float32, ran the TorchScript module without gradients and asserted a 2-D output. Both the fast and
the reference paths call the model only through :func:`representation_function`, so they feed it byte-identical tensors
(same values, same strides) and differ only in how many images go into one call.
"""
import os

import numpy as np
import torch

from submission.files import first_line as _first_line
from submission.metrics.batching import batched

from evaluate.errors import EvaluationError

# Batch sizes at which the challenge called the representation (MIG, DCI, SAP, IRS: 16; FactorVAE, BetaVAE: 64).
CHALLENGE_BATCH_SIZES = (16, 64)
# Outputs for the same images at two batch sizes may differ by float noise, but no more than this (relative to the
# output's scale); beyond it the module depends on the batch (batch statistics, dropout, ...), which the grader cannot score.
BATCH_TOLERANCE = 1e-4


def kit_model(module):
    """The kit model behind ``module`` when it was rebuilt from a checkpoint (it has a decoder), else None (TorchScript:
    the encoder's means only)."""
    from submission.checkpoints import RepresentationModule
    return module.model if isinstance(module, RepresentationModule) else None


def load_representation(path):
    """The module to evaluate, in eval mode: a TorchScript file, or a kit checkpoint (a file, or a directory holding
    ``checkpoint.pt``) rebuilt from its model_config, through the kit's one loader (``weights_only=True``: a file whose
    pickle would run code is refused, not run)."""
    from submission.files import ArtifactError
    from submission.checkpoints import RepresentationModule, load_model_file
    try:
        module, kind, _ = load_model_file(os.fspath(path))
    except ArtifactError as exc:
        raise EvaluationError(str(exc)) from None
    return (RepresentationModule(module) if kind == "checkpoint" else module).eval()


def resolve_device(device):
    """The torch device to encode on: ``cpu`` (the default, like the CPU reference), or ``cuda``/``cuda:N`` when torch
    sees that GPU. Anything else is one EvaluationError line."""
    try:
        resolved = torch.device(device or "cpu")
    except (RuntimeError, TypeError):
        raise EvaluationError(f"--device {device!r}: expected cpu, cuda or cuda:N") from None
    if resolved.type == "cpu":
        return resolved
    if resolved.type != "cuda":
        raise EvaluationError(f"--device {device!r}: expected cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise EvaluationError(f"--device {device}: torch sees no CUDA device here (torch.cuda.is_available() is False); "
                              "use --device cpu")
    if resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise EvaluationError(f"--device {device}: torch sees {torch.cuda.device_count()} CUDA device(s); expected an "
                              "index below that")
    return resolved


def device_description(device):
    """What evaluation_run.json records: ``cpu``, or the GPU's name."""
    if device.type != "cuda":
        return "cpu"
    return f"{device} ({torch.cuda.get_device_name(device)})"


def inference_optimized(module, device):
    """A frozen, inference-optimized copy of ``module`` for the fast mode's bulk pass on a CPU (constants folded, convs
    fused with their activations and run through oneDNN): about 1.6-2.2x the images per second for the kit's networks,
    codes equal to float noise (the fast mode measures by how much). None where that does not apply or fails (then the
    module itself encodes)."""
    if device.type != "cpu":
        return None
    try:
        scripted = module if isinstance(module, torch.jit.ScriptModule) else torch.jit.script(module)
        return torch.jit.optimize_for_inference(torch.jit.freeze(scripted.eval()))
    except Exception:   # a module that does not script or freeze: nothing lost, the bulk pass uses it as it is
        return None


def representation_function(module, name="representation", device=None):
    """dlib's ``representation_function`` for ``module``: NHWC float array in [0, 1] -> float32 (N, D) numpy array.

    The images go to ``device`` (default: the CPU) as float32 NCHW; the module must already be there. Every call is
    checked: a tensor, 2-D, one row per image, float32, finite. A fault raises EvaluationError naming ``name``.
    """
    device = torch.device(device or "cpu")
    seen = {}                                       # the number of codes the first call returned

    def represent(observations):
        x = torch.from_numpy(np.moveaxis(np.asarray(observations), 3, 1)).float()
        if device.type != "cpu":
            x = x.to(device)
        try:
            with torch.no_grad():
                y = module(x)
        except Exception as exc:
            raise EvaluationError(f"{name}: failed on a float32 batch of shape {tuple(x.shape)} "
                                  f"({_first_line(exc)}); expected float32 (N, 3, 64, 64) in [0, 1] -> (N, D)") from None
        if not isinstance(y, torch.Tensor):
            raise EvaluationError(f"{name}: returned {type(y).__name__}; expected a float32 tensor of shape (N, D)")
        if y.dim() != 2 or y.shape[0] != x.shape[0] or y.shape[1] == 0:
            raise EvaluationError(f"{name}: returned shape {tuple(y.shape)} for {x.shape[0]} images; "
                                  f"expected ({x.shape[0]}, D) with D >= 1")
        if seen.setdefault("codes", y.shape[1]) != y.shape[1]:
            raise EvaluationError(f"{name}: returned {y.shape[1]} codes for a batch of {x.shape[0]} images, and "
                                  f"{seen['codes']} codes before; expected the same number of codes for every batch")
        if y.dtype != torch.float32:
            raise EvaluationError(f"{name}: returned dtype {str(y.dtype).replace('torch.', '')}; expected float32")
        # An owned copy: a view would keep the torch tensor alive, and thousands of small live tensors scattered over
        # the heap pin the freed multi-MB batches between them (a full evaluation grew past 20 GB that way).
        codes = y.detach().cpu().numpy().copy()
        finite = np.isfinite(codes)
        if not finite.all():
            bad = int((~finite.all(axis=1)).sum())
            raise EvaluationError(f"{name}: returned NaN or inf for {bad} of {len(codes)} images; expected finite values")
        return codes

    return represent


def check_representation(represent, dataset, name="representation", num_images=128, batch_sizes=(16, 64, 128)):
    """Run the representation on ``num_images`` of the dataset's images; return D.

    Raises EvaluationError when it fails, returns the wrong shape, dtype, NaN or inf, or gives outputs for the same images
    that depend on the batch size or differ between two identical calls (beyond float noise).
    """
    observations = dataset.sample_observations(num_images, np.random.RandomState(2019))
    first = represent(observations[:batch_sizes[0]])
    again = represent(observations[:batch_sizes[0]])
    scale = max(float(np.abs(first).max()), 1.0)
    if np.abs(first - again).max() > BATCH_TOLERANCE * scale:
        raise EvaluationError(f"{name}: two calls on the same images gave different outputs (max |diff| "
                              f"{np.abs(first - again).max():.3g}); expected a deterministic representation (the means; "
                              "export in eval mode)")
    reference = batched(represent, observations, batch_sizes[0])
    for batch_size in batch_sizes[1:]:
        other = batched(represent, observations, batch_size)
        diff = float(np.abs(other - reference).max())
        if diff > BATCH_TOLERANCE * scale:
            raise EvaluationError(f"{name}: outputs for the same images differ between batch sizes {batch_sizes[0]} and "
                                  f"{batch_size} (max |diff| {diff:.3g}); expected each image's code to depend on that "
                                  "image only (eval mode, no batch statistics)")
    return int(first.shape[1])
