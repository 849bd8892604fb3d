"""Encoder and decoder bodies, by name. Each encoder maps (N, C, 64, 64) to (N, features); each decoder maps (N, latent)
to Bernoulli logits (N, C, 64, 64). The encoder's last layer (the head) lives in ``heads.py``, so a body serves every
parameterisation of q(z|x).
"""
from torch import nn

ARCHITECTURES = {}


def register_architecture(name):
    def add(builder):
        ARCHITECTURES[name] = builder
        return builder
    return add


class Unflatten(nn.Module):
    """(N, F) -> (N, *shape); written out so a traced module keeps the batch size dynamic."""

    def __init__(self, shape):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x):
        return x.reshape((x.shape[0],) + self.shape)


@register_architecture("higgins")
def higgins_2017(channels: int, latent_dim: int):
    """The challenge default (Higgins et al. 2017, beta-VAE, Table 1 row 3): conv 32-32-64-64 (4x4, stride 2), fc 256.

    The decoder mirrors the encoder: fc 256, fc 64*4*4, then four transposed convs back to 64x64 logits.
    Returns (encoder body, number of features it outputs, decoder).
    """
    encoder = nn.Sequential(
        nn.Conv2d(channels, 32, 4, 2, 1), nn.ReLU(),   # 32x32
        nn.Conv2d(32, 32, 4, 2, 1), nn.ReLU(),         # 16x16
        nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(),         # 8x8
        nn.Conv2d(64, 64, 4, 2, 1), nn.ReLU(),         # 4x4
        nn.Flatten(), nn.Linear(64 * 4 * 4, 256), nn.ReLU())
    decoder = nn.Sequential(
        nn.Linear(latent_dim, 256), nn.ReLU(),
        nn.Linear(256, 64 * 4 * 4), nn.ReLU(), Unflatten((64, 4, 4)),
        nn.ConvTranspose2d(64, 64, 4, 2, 1), nn.ReLU(),
        nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(),
        nn.ConvTranspose2d(32, 32, 4, 2, 1), nn.ReLU(),
        nn.ConvTranspose2d(32, channels, 4, 2, 1))
    return encoder, 256, decoder


@register_architecture("tcvae_entry")
def tcvae_challenge_entry(channels: int, latent_dim: int):
    """The beta-TCVAE challenge entry's network (Disentanglement-PyTorch): 5 convs (3x3, stride 2, 32 up to 256), then
    the linear head; decoder: a 1x1 conv on z, then 6 transposed convs (4x4, stride 2) from 256 down to the channels."""
    widths = [channels, 32, 64, 128, 256, 256]
    layers = []
    for c_in, c_out in zip(widths, widths[1:]):
        layers += [nn.Conv2d(c_in, c_out, 3, 2, 1), nn.ReLU()]          # 64 -> 32 -> 16 -> 8 -> 4 -> 2
    encoder = nn.Sequential(*layers, nn.Flatten())
    up = [256, 256, 128, 64, 32, 32]
    dec = [Unflatten((latent_dim, 1, 1)), nn.Conv2d(latent_dim, 256, 1), nn.ReLU()]
    for c_in, c_out in zip(up, up[1:] + [channels]):
        dec += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1), nn.ReLU()]   # 1 -> 2 -> ... -> 64
    decoder = nn.Sequential(*dec[:-1])                                   # logits: no ReLU after the last layer
    return encoder, 256 * 2 * 2, decoder


@register_architecture("mlp")
def small_mlp(channels: int, latent_dim: int, hidden: int = 32):
    """A two-layer MLP on the flattened image: for tests and synthetic problems, not for the challenge."""
    pixels = channels * 64 * 64
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(pixels, hidden), nn.ReLU())
    decoder = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, pixels),
                            Unflatten((channels, 64, 64)))
    return encoder, hidden, decoder


def build_architecture(name: str, channels: int, latent_dim: int):
    if name not in ARCHITECTURES:
        raise ValueError(f"architecture {name!r} is unknown: expected one of {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[name](channels, latent_dim)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())

