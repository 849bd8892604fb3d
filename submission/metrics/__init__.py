"""Metrics beyond the leaderboard, as pure functions on arrays (dlib's habit: numpy in, dict of scores out):

    mutual_information_concentration(codes, factors, groups=None)   -> {"mic", "mic_per_factor", "mic_best_group"}
    active_dimensions(codes, threshold=0.01)                         -> {"active_dims", "activity"}
    gaussian_total_correlation(codes)                                -> {"gaussian_tc"}
    sampled_total_correlation(mu, logvar, rng)                       -> {"sampled_tc"}
    reconstruction_error(observations, reconstruct_logits)           -> {"reconstruction_nll", "reconstruction_mse"}
    factor_capture(codes, factors, factor_names)                     -> {"capture_nmi", "captured", "captured_factors"}
    factor_readout(codes, factors, factor_names)                     -> {"readout_nmi"}

The evaluator's ``extra`` metric (evaluate/extra.py) adapts them to dlib's calling convention, one metric at a time.
"""
import numpy as np
import torch

from .active_dims import active_dimensions
from .batching import batched
from .captured import capture_of_representation, factor_capture
from .mic import mutual_information_concentration
from .readout import factor_readout
from .reconstruction import reconstruction_error
from .total_correlation import gaussian_total_correlation, sampled_total_correlation


class evaluation_mode:
    """``with evaluation_mode(model) as device:`` the model in eval mode (the decoder sees the deterministic latent),
    restored afterwards; ``device`` is where its parameters are."""

    def __init__(self, model):
        self.model, self.was_training = model, model.training

    def __enter__(self):
        self.model.eval()
        return next(self.model.parameters(), torch.zeros(0)).device

    def __exit__(self, *exc):
        self.model.train(self.was_training)
        return False


@torch.no_grad()
def reconstruction_of(model, nchw, batch_size, device) -> dict:
    """Reconstruction error of a kit model (``forward`` giving ``logits``) on float NCHW images."""
    def logits_of(x):
        return model(torch.from_numpy(np.asarray(x, np.float32)).to(device))["logits"].float().cpu().numpy()

    return reconstruction_error(nchw, logits_of, batch_size)


@torch.no_grad()
def sampled_tc_of(model, nchw, rng, batch_size, device) -> dict:
    """The sampled total correlation of a kit model's aggregate posterior (``encode`` giving mu, logvar)."""
    def posterior_of(x):
        out = model.encode(torch.from_numpy(np.asarray(x, np.float32)).to(device))
        return torch.cat([out["mu"].float(), out["logvar"].float()], 1).cpu().numpy()

    mu, logvar = np.split(batched(posterior_of, nchw, batch_size), 2, axis=1)
    return sampled_total_correlation(mu, logvar, rng)


__all__ = ["active_dimensions", "batched", "capture_of_representation", "evaluation_mode", "factor_capture",
           "factor_readout", "gaussian_total_correlation", "mutual_information_concentration", "reconstruction_error",
           "reconstruction_of", "sampled_tc_of", "sampled_total_correlation"]
