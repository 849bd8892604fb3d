"""How each latent dimension responds to each ground-truth factor: a picture of disentanglement that needs only the
representation (x -> (N, D)), so it works for a bare TorchScript file as well as for a checkpoint.

For factor f, images are drawn with f fixed at each of (up to ``max_values``) values and the other factors uniform.
The response of dimension d to factor f is the share of d's variance that f's value explains, the bias-corrected
correlation ratio epsilon^2 (Kelley 1935): (SS_between - (k - 1) MS_within) / SS_total, clipped to [0, 1].
A disentangled code has one strong cell per row and per column; a dead (or pruned) dimension has a zero row.
"""
import numpy as np
import torch

from submission.progress import progress


def factor_names(dataset) -> list:
    names = getattr(dataset, "factor_names", None)
    sizes = list(dataset.factors_num_values)
    if names is None or len(names) != len(sizes):
        names = [f"factor {i}" for i in range(len(sizes))]
    return [f"{name} ({size})" for name, size in zip(names, sizes)]


def dataset_images(dataset, factors, random_state) -> torch.Tensor:
    """float32 NCHW in [0, 1] for (N, F) factors, through the uint8 fast path when the dataset has one."""
    if hasattr(dataset, "images_from_factors"):
        images = torch.from_numpy(np.ascontiguousarray(dataset.images_from_factors(factors)))
        return images.permute(0, 3, 1, 2).float().div_(255.0)
    images = np.asarray(dataset.sample_observations_from_factors(factors, random_state), np.float32)
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))


def correlation_ratio(codes: np.ndarray, groups: int) -> np.ndarray:
    """codes (k * n, D) in k equal consecutive groups -> bias-corrected epsilon^2 per dimension, (D,) in [0, 1]."""
    total_count = codes.shape[0]
    means = codes.reshape(groups, -1, codes.shape[1]).mean(1)
    ss_total = total_count * codes.var(0)
    ss_between = total_count * means.var(0)
    ms_within = (ss_total - ss_between) / max(total_count - groups, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = (ss_between - (groups - 1) * ms_within) / ss_total
    return np.clip(np.nan_to_num(ratio, nan=0.0), 0.0, 1.0)


def factor_response(representation, dataset, images_per_value: int = 16, max_values: int = 10, seed: int = 0) -> dict:
    """``representation``: torch float NCHW -> (N, D). Returns ``response`` (D, F), ``latent_std`` (D,) over every image
    drawn, and ``factor_names``."""
    random_state = np.random.RandomState(seed)
    sizes = list(dataset.factors_num_values)
    responses, codes_seen = [], []
    for f in progress(range(len(sizes)), "factor response", unit="factors"):
        values = np.unique(np.rint(np.linspace(0, sizes[f] - 1, min(sizes[f], max_values))).astype(np.int64))
        factors = dataset.sample_factors(len(values) * images_per_value, random_state)
        factors[:, f] = np.repeat(values, images_per_value)
        codes = representation(dataset_images(dataset, factors, random_state)).cpu().numpy().astype(np.float64)
        responses.append(correlation_ratio(codes, len(values)))
        codes_seen.append(codes)
    return {"response": np.stack(responses, axis=1), "latent_std": np.concatenate(codes_seen).std(0),
            "factor_names": factor_names(dataset)}


def response_figure(result: dict, pruned=None):
    """Heatmap of the response (dimensions x factors) beside each dimension's spread over the data."""
    from matplotlib.figure import Figure
    response, spread = result["response"], result["latent_std"]
    dims, num_factors = response.shape
    pruned = np.zeros(dims, bool) if pruned is None else np.asarray(pruned)
    figure = Figure(figsize=(2.2 + 0.9 * num_factors + 2.5, 1.0 + 0.38 * dims))
    heat, bars = figure.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [max(num_factors, 1), 2.5]})
    image = heat.imshow(response, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    for d in range(dims):
        for f in range(num_factors):
            heat.text(f, d, f"{response[d, f]:.2f}", ha="center", va="center", fontsize=7,
                      color="black" if response[d, f] > 0.6 else "white")
    heat.set_xticks(range(num_factors), result["factor_names"], rotation=35, ha="right", fontsize=8)
    heat.set_yticks(range(dims), [f"z{d}" + (" (pruned)" if pruned[d] else "") for d in range(dims)], fontsize=8)
    for tick, is_pruned in zip(heat.get_yticklabels(), pruned):
        tick.set_color("tab:red" if is_pruned else "black")
    heat.set_title("share of each dimension's variance explained by each factor", fontsize=9)
    figure.colorbar(image, ax=heat, fraction=0.04, pad=0.02)
    bars.barh(range(dims), spread, color=["tab:red" if p else "tab:blue" for p in pruned])
    bars.set_xlabel("std over the data", fontsize=8)
    bars.set_title("latent spread", fontsize=9)
    return figure
