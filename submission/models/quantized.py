"""QLAE's model (Hsu, Dorrell, Whittington, Wu & Finn 2023, "Disentanglement via Latent Quantization"): a deterministic
encoder, one small learnt codebook of scalar values per latent dimension, and a decoder that sees the quantized code.

    z_c = encoder(x)                          the continuous code (the representation the evaluator scores)
    z_q[d] = the value of codebook d nearest to z_c[d]
    z_hat = z_c + stop_gradient(z_q - z_c)    straight through: the decoder sees z_q, the encoder gets its gradient

Codebooks start evenly spaced on [-0.5, 0.5] (10 values each by default) and are learnt. The quantizer is written here
rather than taken from ``vector-quantize-pytorch`` (whose ``LatentQuantize`` does the same snap): a nearest value per
dimension is a few lines, and that package would add einops and einx to the pinned stack.
"""
import torch
from torch import nn

from .architectures import build_architecture
from .vae import register_model


class ScalarCodebooks(nn.Module):
    """``latent_dim`` codebooks of ``values`` learnt scalars each; ``forward(z)`` snaps each column of ``z`` (N, D) to its
    codebook's nearest value: (quantized (N, D), indices (N, D)). Ties go to the lower index."""

    def __init__(self, latent_dim: int, values: int = 10, low: float = -0.5, high: float = 0.5):
        super().__init__()
        self.values = nn.Parameter(torch.linspace(low, high, int(values)).repeat(int(latent_dim), 1))

    def forward(self, z):
        values = self.values.to(z.dtype)
        index = (z[:, :, None] - values[None]).abs().argmin(dim=2)
        return torch.gather(values.expand(len(z), -1, -1), 2, index[..., None]).squeeze(2), index


class DeterministicHead(nn.Module):
    """The continuous code itself (no posterior): ``mu`` is the code, ``logvar`` is absent."""

    def __init__(self, features: int, latent_dim: int):
        super().__init__()
        self.linear = nn.Linear(features, latent_dim)

    def forward(self, h):
        return self.linear(h)


@register_model("qlae")
class QuantizedAE(nn.Module):
    """``model(x)`` -> {"mu": z_c, "z_quantized": z_q, "z": z_hat, "indices", "logits"}; ``representation(x)`` = z_c."""

    def __init__(self, architecture: str = "higgins", latent_dim: int = 14, channels: int = 3, head: str = None,
                 values_per_latent: int = 10):
        super().__init__()
        if head not in (None, "deterministic"):
            raise ValueError(f"model.head {head!r}: QLAE's encoder outputs its code itself (head 'deterministic')")
        self.architecture, self.latent_dim, self.channels = architecture, int(latent_dim), int(channels)
        self.values_per_latent = int(values_per_latent)
        self.encoder, features, self.decoder = build_architecture(architecture, self.channels, self.latent_dim)
        self.head = DeterministicHead(features, self.latent_dim)
        self.codebooks = ScalarCodebooks(self.latent_dim, self.values_per_latent)

    def config(self) -> dict:
        return {"kind": self.kind, "architecture": self.architecture, "latent_dim": self.latent_dim,
                "channels": self.channels, "head": "deterministic", "values_per_latent": self.values_per_latent}

    def encode(self, x):
        z = self.head(self.encoder(x)).float()
        return {"mu": z, "logvar": torch.zeros_like(z)}

    def forward(self, x):
        out = self.encode(x)
        quantized, index = self.codebooks(out["mu"])
        out.update(z_quantized=quantized, indices=index, z=out["mu"] + (quantized - out["mu"]).detach())
        out["logits"] = self.decoder(out["z"])
        return out

    def representation(self, x):
        return self.encode(x)["mu"]
