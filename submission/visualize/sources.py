"""Where the pictures' model comes from: an in-memory kit model, a trainer checkpoint, or a bare TorchScript file.

A TorchScript representation holds only the encoder's deterministic map x -> (N, D), so it can show how each latent
dimension responds to the ground-truth factors but cannot decode; a kit model or checkpoint can do everything.
``ModelView`` hides the difference: each picture asks it for what it needs and says what is unavailable.
"""
import numpy as np
import torch


class VisualizeError(ValueError):
    """A bad input to the report (missing run directory, checkpoint without a decoder, ...): one line for a person."""


class ModelView:
    """Batched, gradient-free access to a model on the CPU in fp32 and eval mode.

    ``decode`` and ``encode`` exist only when the source has a decoder (``has_decoder``); ``gate`` only for PVAE."""

    def __init__(self, module, source: str, has_decoder: bool, latent_dim: int = None, batch_size: int = 256):
        self.module, self.source, self.has_decoder = module, source, has_decoder
        self.latent_dim, self.batch_size = latent_dim, batch_size
        self.run_info, self.gin_config = {}, None      # what a trainer checkpoint recorded (dataset, recipe)

    @classmethod
    def from_model(cls, model, source: str = "in-memory model"):
        from submission.export import cpu_fp32_copy
        return cls(cpu_fp32_copy(model), source, has_decoder=hasattr(model, "decoder") or hasattr(model, "decode"),
                   latent_dim=int(model.latent_dim))

    # --- encoder ------------------------------------------------------------------------------------------------
    def _batches(self, x, fn):
        outputs = []
        with torch.no_grad():
            for start in range(0, x.shape[0], self.batch_size):
                outputs.append(fn(x[start:start + self.batch_size].float()))
        return outputs

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        """float NCHW in [0, 1] -> float32 (N, D): what the evaluator scores (PVAE: the gated means)."""
        forward = self.module.representation if hasattr(self.module, "representation") else self.module
        try:
            out = torch.cat(self._batches(x, lambda b: forward(b).float()))
        except RuntimeError as exc:     # e.g. a 3-channel model on a 1-channel dataset
            from submission.files import first_line
            shape, line = tuple(x.shape[1:]), first_line(exc, typed=False)
            raise VisualizeError(f"{self.source} fails on images of shape {shape} ({line}): "
                                 f"expected a model for this dataset") from None
        if out.ndim != 2:
            raise VisualizeError(f"{self.source} returns shape {tuple(out.shape)} for a batch of images: expected (N, D)")
        self.latent_dim = out.shape[1]
        return out

    def posterior(self, x: torch.Tensor) -> dict:
        """mu and logvar (N, D) of q(z|x); a kit model only."""
        self._need_decoder("the posterior q(z|x)")
        parts = self._batches(x, lambda b: self.module(b))
        return {key: torch.cat([p[key].float() for p in parts]) for key in ("mu", "logvar")}

    # --- decoder ------------------------------------------------------------------------------------------------
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """float (N, D) latents -> float NCHW images in [0, 1] (the Bernoulli means)."""
        self._need_decoder("decoding")
        decode = getattr(self.module, "decode", None) or self.module.decoder
        return torch.cat(self._batches(z, lambda b: torch.sigmoid(decode(b).float())))

    def gate(self):
        """PVAE's deterministic test-time gate (D,) as numpy, or None for a model without gates."""
        gate = getattr(self.module, "gate", None)
        if gate is None or not hasattr(gate, "deterministic"):
            return None
        with torch.no_grad():
            return gate.deterministic().float().cpu().numpy()

    def pruned(self, threshold: float = 0.0) -> np.ndarray:
        """bool (D,): the dimensions whose test-time gate is closed (all False without gates)."""
        gate = self.gate()
        if gate is None:
            return np.zeros(self.latent_dim or 0, bool)
        return gate <= threshold

    def _need_decoder(self, what: str) -> None:
        if not self.has_decoder:
            raise VisualizeError(f"{self.source} has no decoder: {what} needs a kit checkpoint, not a TorchScript file")


def load_model_file(path: str) -> ModelView:
    """A trainer checkpoint (decoder included) or a TorchScript representation (encoder only), through the kit's one
    loader (``submission.checkpoints.load_model_file``: checkpoints are read with ``weights_only=True``)."""
    from submission.files import ArtifactError
    from submission.checkpoints import load_model_file as load
    try:
        module, kind, checkpoint = load(path)
    except ArtifactError as exc:
        raise VisualizeError(str(exc)) from None
    if kind == "torchscript":
        return ModelView(module, f"TorchScript file {path}", has_decoder=False)
    view = ModelView.from_model(module, source=f"checkpoint {path}")
    view.run_info = checkpoint.get("run") or {}
    view.gin_config = checkpoint.get("gin_config")
    return view
