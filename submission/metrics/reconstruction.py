"""Reconstruction error of the deterministic autoencoder path x -> mu(x) -> decoder: the Bernoulli negative
log-likelihood (binary cross-entropy summed over pixels, nats per image, the ELBO's reconstruction term) and the mean
squared error per pixel of sigmoid(logits)."""
import numpy as np


def reconstruction_error(observations, reconstruct_logits, batch_size: int = 64) -> dict:
    """observations: (N, C, H, W) floats in [0, 1]; reconstruct_logits: a function (B, C, H, W) -> logits, numpy in
    and out."""
    observations = np.asarray(observations, dtype=np.float64)
    nll, sq = [], []
    for start in range(0, observations.shape[0], batch_size):
        x = observations[start:start + batch_size]
        logits = np.asarray(reconstruct_logits(x), dtype=np.float64)
        if logits.shape != x.shape:
            raise ValueError(f"reconstruction has shape {logits.shape} for inputs {x.shape}: expected the same")
        # BCE with logits, stable form: max(l, 0) - l x + log(1 + exp(-|l|))
        bce = np.maximum(logits, 0) - logits * x + np.log1p(np.exp(-np.abs(logits)))
        nll.append(bce.reshape(len(x), -1).sum(1))
        sq.append(((1.0 / (1.0 + np.exp(-logits)) - x) ** 2).reshape(len(x), -1).mean(1))
    return {"reconstruction_nll": float(np.concatenate(nll).mean()), "reconstruction_mse": float(np.concatenate(sq).mean())}
