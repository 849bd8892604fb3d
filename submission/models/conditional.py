"""Conditional VAEs whose attributes are the dataset's known factors (one-hot per factor).

CVAE (Sohn, Lee & Yan 2015, "Learning structured output representation using deep conditional generative models"):
encoder q(z|x), decoder p(x|z, y). The exported representation must come from the image alone, so it is mu(x).

IFCVAE (Creswell et al. 2017, "Conditional autoencoders with adversarial information factorization"): the encoder also
predicts the attributes y_hat(x); the decoder gets z and y; an adversary (in the objective) keeps y out of z. The
representation is [mu(x), E[y_f | x] / (K_f - 1) for each factor f], so ``latent_dim`` = style dims + number of factors.
"""
import torch
import torch.nn.functional as F
from torch import nn

from .architectures import build_architecture
from .heads import build_head
from .vae import GaussianVAE, register_model

MPI3D_FACTOR_SIZES = (6, 6, 2, 3, 3, 40, 40)


def one_hot_attributes(factors, sizes):
    """(N, F) int64 factors -> (N, sum(sizes)) float one-hot blocks."""
    if factors.shape[1] != len(sizes):
        raise ValueError(f"factors have {factors.shape[1]} columns, the conditional model expects {len(sizes)} "
                         f"(attribute_sizes={list(sizes)})")
    return torch.cat([F.one_hot(factors[:, f].long(), k).float() for f, k in enumerate(sizes)], dim=1)


def split_attribute_logits(logits, sizes):
    return torch.split(logits, list(sizes), dim=1)


def expected_normalised_attributes(logits, sizes):
    """E[y_f | x] / (K_f - 1) per factor from attribute logits -> (N, F) in [0, 1]."""
    columns = []
    for block, k in zip(split_attribute_logits(logits.float(), sizes), sizes):
        values = torch.arange(k, dtype=torch.float32, device=block.device) / max(k - 1, 1)
        columns.append(F.softmax(block, dim=1) @ values)
    return torch.stack(columns, dim=1)


@register_model("cvae")
class ConditionalVAE(GaussianVAE):
    def __init__(self, architecture: str = "higgins", latent_dim: int = 10, channels: int = 3, head: str = None,
                 attribute_sizes=MPI3D_FACTOR_SIZES, predict_attributes: bool = False):
        nn.Module.__init__(self)
        self.attribute_sizes = [int(k) for k in attribute_sizes]
        self.predict_attributes = bool(predict_attributes)
        self.architecture, self.latent_dim, self.channels = architecture, int(latent_dim), int(channels)
        self.style_dim = self.latent_dim - (len(self.attribute_sizes) if self.predict_attributes else 0)
        if self.style_dim < 1:
            raise ValueError(f"conditional model latent_dim={latent_dim} leaves no style dimension beside "
                             f"{len(self.attribute_sizes)} predicted attributes: expected a larger latent_dim")
        self.head_name = head or self.default_head
        decoder_inputs = self.style_dim + sum(self.attribute_sizes)
        self.encoder, features, self.decoder = build_architecture(architecture, self.channels, decoder_inputs)
        self.head = build_head(self.head_name, features, self.style_dim)
        self.attribute_head = nn.Linear(features, sum(self.attribute_sizes)) if self.predict_attributes else None

    def config(self) -> dict:
        return dict(super().config(), attribute_sizes=list(self.attribute_sizes),
                    predict_attributes=self.predict_attributes)

    def encode(self, x):
        features = self.encoder(x)
        out = dict(self.head(features))
        if self.attribute_head is not None:
            out["attribute_logits"] = self.attribute_head(features).float()
        return out

    def attributes_for_decoder(self, out, factors):
        """The true attributes when given; else the predicted ones (IFCVAE) or uniform blocks (CVAE)."""
        if factors is not None:
            return one_hot_attributes(factors, self.attribute_sizes)
        if "attribute_logits" in out:
            blocks = split_attribute_logits(out["attribute_logits"], self.attribute_sizes)
            return torch.cat([F.softmax(b, dim=1) for b in blocks], dim=1)
        n = out["mu"].shape[0]
        return torch.cat([torch.full((n, k), 1.0 / k, device=out["mu"].device) for k in self.attribute_sizes], 1)

    def forward(self, x, factors=None):
        out = dict(self.encode(x))
        out["z"] = self.sample_latent(out)
        y = self.attributes_for_decoder(out, factors)
        out["logits"] = self.decoder(torch.cat([out["z"], y.to(out["z"].dtype)], dim=1))
        return out

    def representation(self, x):
        out = self.encode(x)
        if self.attribute_head is None:
            return out["mu"].float()
        return torch.cat([out["mu"].float(), expected_normalised_attributes(out["attribute_logits"],
                                                                            self.attribute_sizes)], dim=1)
