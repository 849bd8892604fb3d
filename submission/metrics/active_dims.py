"""The number of active latent dimensions (Burda, Grosse & Salakhutdinov 2016, "Importance weighted autoencoders",
sec. 5.2): dimension d is active when A_d = Var_x(E_q(z|x)[z_d]) exceeds a threshold (0.01 in the paper)."""
import numpy as np


def active_dimensions(codes, threshold: float = 0.01) -> dict:
    """codes: (N, D) deterministic representations (posterior means) of N inputs."""
    codes = np.asarray(codes, dtype=np.float64)
    if codes.ndim != 2 or codes.shape[0] < 2:
        raise ValueError(f"active dimensions need codes (N >= 2, D), got shape {codes.shape}")
    activity = codes.var(axis=0)
    return {"active_dims": int((activity > threshold).sum()), "activity": activity.tolist()}
