"""Models: architectures (bodies), heads (q(z|x) parameterisations), VAE wrappers, and the gin entry point."""
import gin

from .architectures import ARCHITECTURES, build_architecture, count_parameters, register_architecture
from .gates import HardConcreteGate
from .heads import HEADS, register_head
from .vae import MODELS, GaussianVAE, PrunedVAE, register_model


def build_model(config: dict):
    """Rebuild a model from ``model.config()`` (no gin involved)."""
    config = dict(config)
    kind = config.pop("kind", None)
    if kind not in MODELS:
        raise ValueError(f"model kind {kind!r} is unknown: expected one of {sorted(MODELS)}")
    try:
        return MODELS[kind](**config)
    except TypeError as exc:
        raise ValueError(f"model config {config} does not fit kind {kind!r}: {exc}") from None


@gin.configurable("model")
def make_model(kind: str = "vae", architecture: str = "higgins", latent_dim: int = 10, channels: int = 3,
               head: str = None, options: dict = None):
    """The recipe's model: ``model.kind``, ``model.architecture``, ``model.latent_dim``; kind-specific arguments
    (PVAE's gate constants) go in ``model.options``."""
    return build_model(dict(kind=kind, architecture=architecture, latent_dim=latent_dim, channels=channels,
                            head=head, **(options or {})))


__all__ = ["ARCHITECTURES", "HEADS", "MODELS", "GaussianVAE", "PrunedVAE", "HardConcreteGate", "build_model",
           "make_model", "build_architecture", "count_parameters", "register_architecture", "register_head",
           "register_model"]

# Every model kind registers itself, so build_model() rebuilds any checkpoint without importing the zoo first.
from . import conditional, joint, quantized, sparse_coding  # noqa: E402,F401  (kinds cvae, pjvae, qlae, vsc)
