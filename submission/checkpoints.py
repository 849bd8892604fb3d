"""Tensors on disk: the trainer's checkpoint format, the one model-file loader and the representation wrapper.

* ``save_checkpoint``, ``load_checkpoint``, ``load_latest_checkpoint``: the last two checkpoints are kept, a damaged
  latest one falls back to the previous, and a file that failed to load never becomes the fallback;
* ``load_model_file``: TorchScript (after ``submission.torchscript_check`` has read its code and found only pure tensor
  operations), or a checkpoint read with ``weights_only=True``: nothing in a file the kit is given runs code;
* ``RepresentationModule``: what every export and evaluation runs.

File names and atomic writes are ``submission.files``'s.
"""
import json
import os
import zipfile

import torch
from torch import nn

from submission import files
from submission.files import CHECKPOINT_NAME, PREVIOUS_CHECKPOINT_NAME, ArtifactError, first_line as _first_line
from submission.torchscript_check import UnsafeTorchScript, check_torchscript

CHECKPOINT_FORMAT = 1


# ------------------------------------------------------------------------------------------------------ checkpoints
def save_checkpoint(state: dict, path: str, keep_previous: bool = True) -> None:
    """Write a checkpoint atomically and keep the one it replaces as ``checkpoint.prev.pt`` (via a hard link, so some
    complete checkpoint is at ``path`` at every moment). ``keep_previous=False`` when the file at ``path`` failed to
    load: it is replaced, never kept as the fallback, and the previous good checkpoint stays where it is."""
    previous = os.path.join(os.path.dirname(os.path.abspath(path)), PREVIOUS_CHECKPOINT_NAME)

    def rotate(_tmp):
        if keep_previous and os.path.exists(path):
            link = f"{previous}.tmp-{os.getpid()}"
            if os.path.exists(link):
                os.remove(link)
            os.link(path, link)
            os.replace(link, previous)

    files.atomic_write(path, lambda f: torch.save(state, f), check=rotate)


def load_checkpoint(path: str) -> dict:
    """A trainer checkpoint, read on the CPU with ``weights_only=True`` (no code in the file can run); ArtifactError
    (one line naming the file) when it is missing, unreadable, untrusted or not the trainer's format."""
    if not os.path.isfile(path):
        raise ArtifactError(f"checkpoint {path} does not exist: expected a file written by the trainer")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ArtifactError(f"checkpoint {path} is unreadable or untrusted ({_first_line(exc)[:160]}): expected a "
                            f"trainer checkpoint, which holds only tensors and plain values") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ArtifactError(f"checkpoint {path} has no format {CHECKPOINT_FORMAT} header: expected a file written by "
                            f"the trainer")
    return checkpoint


def load_latest_checkpoint(run_dir: str):
    """(checkpoint, path, note) of the newest readable checkpoint in ``run_dir``, or (None, None, None) when there is
    none. A damaged latest file falls back to the previous one, and ``note`` says so in one line; when both are
    damaged it raises (never a silent start from scratch)."""
    latest = os.path.join(run_dir, CHECKPOINT_NAME)
    previous = os.path.join(run_dir, PREVIOUS_CHECKPOINT_NAME)
    if not os.path.exists(latest) and not os.path.exists(previous):
        return None, None, None
    try:
        return load_checkpoint(latest), latest, None
    except ArtifactError as exc:
        problem = str(exc)
    if not os.path.exists(previous):
        raise ArtifactError(f"{problem}; no previous checkpoint to fall back to: remove {run_dir} to start afresh")
    try:
        checkpoint = load_checkpoint(previous)
    except ArtifactError:
        raise ArtifactError(f"{problem}; the previous checkpoint {previous} cannot be read either: remove {run_dir} to "
                            f"start afresh") from None
    return checkpoint, previous, (f"checkpoint {latest} cannot be read (damaged or not the trainer's); resuming from "
                                  f"the previous one, {previous} (step {checkpoint.get('step')})")


def check_architecture(checkpoint: dict, model, path: str) -> None:
    """A checkpoint fits a model when its architecture (``model_config``) equals the one the model has."""
    found, expected = checkpoint.get("model_config"), model.config()
    if found != expected:
        raise ArtifactError(f"checkpoint {path} holds architecture {json.dumps(found, sort_keys=True)}, but the recipe "
                            f"builds {json.dumps(expected, sort_keys=True)}: expected the same model")


# ------------------------------------------------------------------------------------------------------ model files
class RepresentationModule(nn.Module):
    """What the evaluator runs: images in, the model's deterministic representation (PVAE: gated means) out, float32."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.representation(x.float()).float()


def model_file_kind(path: str):
    """'torchscript', 'checkpoint' or None, from the zip archive's member names (both formats are zip files)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return None
    if any("/code/" in n or n.endswith("/constants.pkl") for n in names):
        return "torchscript"
    if any(n.endswith("/data.pkl") for n in names):
        return "checkpoint"
    return None


def model_from_checkpoint(checkpoint: dict, path: str):
    """The kit model a checkpoint describes (``model_config``), with its weights."""
    from submission.models import build_model
    if "model_config" not in checkpoint or "model" not in checkpoint:
        raise ArtifactError(f"checkpoint {path} has no model_config/model entries: expected a trainer checkpoint")
    try:
        model = build_model(checkpoint["model_config"])
        model.load_state_dict(checkpoint["model"])
    except Exception as exc:
        raise ArtifactError(f"checkpoint {path} does not rebuild its model ({_first_line(exc)[:160]})") from None
    return model


def load_model_file(path: str):
    """The one loader for a model file: (module, kind, checkpoint).

    * a TorchScript export: (the scripted module on the CPU, "torchscript", None);
    * a trainer checkpoint (or a directory holding ``checkpoint.pt``): (the rebuilt kit model, "checkpoint", the dict),
      read with ``weights_only=True``: a pickle that would run code is refused, not run.
    Anything else is an ArtifactError naming the file.
    """
    if os.path.isdir(path):
        path = os.path.join(path, CHECKPOINT_NAME)
    if not os.path.isfile(path):
        raise ArtifactError(f"model file {path}: no such file; expected a TorchScript pytorch_model.pt or a trainer "
                            f"checkpoint.pt")
    if model_file_kind(path) == "checkpoint":
        checkpoint = load_checkpoint(path)
        return model_from_checkpoint(checkpoint, path), "checkpoint", checkpoint
    try:
        check_torchscript(path)
    except UnsafeTorchScript as exc:
        raise ArtifactError(str(exc)) from None
    try:
        module = torch.jit.load(path, map_location="cpu")
    except Exception as exc:
        raise ArtifactError(f"model file {path}: torch.jit.load cannot read it ({_first_line(exc)[:160]}); expected a "
                            f"TorchScript module saved with torch.jit.save, or a trainer checkpoint") from None
    return module.eval(), "torchscript", None


