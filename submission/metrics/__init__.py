"""Metrics beyond the leaderboard, as pure functions on arrays (dlib's habit: numpy in, dict of scores out):

    mutual_information_concentration(codes, factors, groups=None)   -> {"mic", "mic_per_factor", "mic_best_group"}
    active_dimensions(codes, threshold=0.01)                         -> {"active_dims", "activity"}
    gaussian_total_correlation(codes)                                -> {"gaussian_tc"}
    sampled_total_correlation(mu, logvar, rng)                       -> {"sampled_tc"}
    reconstruction_error(observations, reconstruct_logits)           -> {"reconstruction_nll", "reconstruction_mse"}
    factor_capture(codes, factors, factor_names)                     -> {"capture_nmi", "captured", "captured_factors"}

``compute_extra_metrics`` runs them all on one sample of a ground-truth dataset; the evaluator and the trainer's log
both call it (the evaluator with the exported representation only, the trainer with the model itself).
"""
import numpy as np
import torch

from .active_dims import active_dimensions
from .captured import capture_of_representation, factor_capture
from .mic import mutual_information_concentration
from .reconstruction import reconstruction_error
from .total_correlation import gaussian_total_correlation, sampled_total_correlation


def _batched(fn, x, batch_size):
    return np.concatenate([fn(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def compute_extra_metrics(ground_truth_data, representation_function, random_state, num_samples: int = 10000,
                          batch_size: int = 64, model=None, groups=None, model_samples: int = 1000) -> dict:
    """MIC, active dimensions and Gaussian TC from ``representation_function`` (numpy NHWC floats in [0, 1] -> (N, D),
    dlib's convention); with ``model`` (an nn.Module with ``encode`` and ``decoder``), also the reconstruction error and
    the sampled TC of the aggregate posterior on the first ``model_samples`` inputs (its cost grows as N^2).
    ``random_state``: a np.random.RandomState, as dlib's metrics take. MIC's binned mutual information is a plug-in
    estimate, biased upwards by about (bins - 1)(values - 1) / (2 N) nats: keep N large (dlib's MIG uses 10000)."""
    factors, observations = ground_truth_data.sample(num_samples, random_state)
    codes = _batched(representation_function, observations, batch_size)
    scores = {}
    scores.update(mutual_information_concentration(codes, factors, groups))
    scores.update(active_dimensions(codes))
    scores.update(gaussian_total_correlation(codes))
    if model is not None:
        scores.update(model_metrics(model, observations[:model_samples],
                                    np.random.default_rng(random_state.randint(2 ** 31)), batch_size))
    return scores


@torch.no_grad()
def model_metrics(model, observations, rng, batch_size: int = 64) -> dict:
    """Reconstruction error and sampled TC from a model (eval mode: the decoder sees the deterministic latent)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        nchw = np.ascontiguousarray(np.moveaxis(np.asarray(observations, np.float32), -1, 1))

        def logits_of(x):
            return model(torch.from_numpy(np.asarray(x, np.float32)).to(device))["logits"].float().cpu().numpy()

        def posterior_of(x):
            out = model.encode(torch.from_numpy(np.asarray(x, np.float32)).to(device))
            return torch.cat([out["mu"].float(), out["logvar"].float()], 1).cpu().numpy()

        scores = reconstruction_error(nchw, logits_of, batch_size)
        posterior = _batched(posterior_of, nchw, batch_size)
        mu, logvar = np.split(posterior, 2, axis=1)
        scores.update(sampled_total_correlation(mu, logvar, rng))
        return scores
    finally:
        model.train(was_training)


__all__ = ["active_dimensions", "capture_of_representation", "compute_extra_metrics", "factor_capture", "gaussian_total_correlation", "model_metrics",
           "mutual_information_concentration", "reconstruction_error", "sampled_total_correlation"]
