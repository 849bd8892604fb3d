"""The ``extra`` metric: the method zoo's metrics beyond the leaderboard (:mod:`submission.metrics`), in the evaluator.

One sample of ``num_samples`` images (``evaluation.random_seed``'s RandomState, like dlib's metrics), encoded with the
representation under test, gives

* ``mic`` (with ``mic_per_factor``, ``mic_best_group``): the mutual information concentration of the Grouped-VAE paper;
* ``active_dims`` (with ``activity``): latent dimensions whose mean varies over the data (Burda et al. 2016);
* ``gaussian_tc``: the total correlation of a Gaussian with the codes' covariance;
* ``infom``, ``infoe``, ``infoc``: InfoMEC (Hsu et al. 2023);
* ``dci_e``, ``dci_s``: DCI-ES's explicitness and size (Eastwood et al. 2023);

and, when the model itself is at hand (a kit checkpoint, not a TorchScript export), its first ``model_samples`` images
give

* ``reconstruction_nll``, ``reconstruction_mse``: the deterministic x -> mu(x) -> decoder path;
* ``sampled_tc``: the total correlation of the aggregate posterior, sampled from the posteriors (mu, logvar).

The numbers are those of computing them all at once on the same dataset, seed and sizes (the draws are taken in the same
order; tests/test_evaluate_extra.py checks it); here each metric is computed on its own, so that one that fails loses
only its own keys.
A metric that cannot be computed (no decoder) is listed under ``skipped`` with the reason; a failure under ``errors``.

Fast mode hands this function :class:`evaluate.replay.KeyedObservations` and the cached representation, like dlib's
metrics; ``images`` then turns the sampled keys into the images the model needs. The results are the same either way.
"""
import numpy as np
import gin

from submission.files import first_line as _first_line
from submission.metrics.dci_es import dci_es
from submission.metrics.infomec import infomec
from submission.metrics import (active_dimensions, batched, evaluation_mode, gaussian_total_correlation,
                                mutual_information_concentration, reconstruction_of, sampled_tc_of)

EXTRA = "extra"
# The keys every run reports (null when skipped or failed), grouped by the computation that gives them.
GROUPS = {
    "mic": ("mic", "mic_per_factor", "mic_best_group"),
    "active_dims": ("active_dims", "activity"),
    "gaussian_tc": ("gaussian_tc",),
    "reconstruction": ("reconstruction_nll", "reconstruction_mse"),
    "sampled_tc": ("sampled_tc",),
    "infomec": ("infom", "infoe", "infoc", "infomec_active_codes"),
    "dci_es": ("dci_e", "dci_e_per_factor", "dci_s"),
}
# What the table shows, in order: key -> label.
SUMMARY = {"mic": "MIC", "active_dims": "active dims", "gaussian_tc": "Gaussian TC",
           "reconstruction_nll": "reconstruction NLL", "reconstruction_mse": "reconstruction MSE",
           "sampled_tc": "sampled TC (aggregate posterior)", "infom": "InfoM (modularity)",
           "infoe": "InfoE (explicitness)", "infoc": "InfoC (compactness)",
           "dci_e": "DCI-ES explicitness (E)", "dci_s": "DCI-ES size (S)"}
# Why a metric is skipped for a TorchScript export (it maps images to the posterior means, nothing more).
NO_DECODER = "needs the decoder, which a TorchScript export lacks: pass the kit checkpoint (train/checkpoint.pt)"
NO_POSTERIOR = "needs the posterior's variances, which a TorchScript export lacks: pass the kit checkpoint"


@gin.configurable("extra_metrics", denylist=["ground_truth_data", "representation_function", "random_state", "model",
                                             "images"])
def extra_metrics(ground_truth_data, representation_function, random_state, model=None, images=None,
                  num_samples=gin.REQUIRED, model_samples=gin.REQUIRED, batch_size=64):
    """dlib's metric convention (dataset, representation function, RandomState) -> results dict.

    Args:
      model: the kit model (``encode``, and ``forward`` giving ``logits``), or None: the decoder metrics are skipped.
      images: turns what ``ground_truth_data.sample`` returned into float NHWC images (the fast path's keys); None when
        it returned images.
      num_samples: images for MIC, active dims and Gaussian TC (MIC's plug-in MI is biased upwards for small N).
      model_samples: the first this many of them for the model's metrics (the sampled TC costs N^2).
      batch_size: images per representation call.
    """
    results, skipped, errors = {}, {}, {}
    for keys in GROUPS.values():
        results.update(dict.fromkeys(keys))

    def attempt(group, fn):
        try:
            values = fn()
        except Exception as exc:  # one metric's fault loses its own keys only
            errors[group] = _first_line(exc)
            return
        results.update({k: values[k] for k in GROUPS[group]})

    factors, observations = ground_truth_data.sample(num_samples, random_state)
    codes = batched(representation_function, observations, batch_size)
    attempt("mic", lambda: mutual_information_concentration(codes, factors))
    attempt("active_dims", lambda: active_dimensions(codes))
    attempt("gaussian_tc", lambda: gaussian_total_correlation(codes))
    attempt("infomec", lambda: infomec(codes, factors))
    attempt("dci_es", lambda: dci_es(codes, factors))
    model_samples = min(int(model_samples), int(num_samples))
    if model is None:
        skipped.update({"reconstruction": NO_DECODER, "sampled_tc": NO_POSTERIOR})
    else:
        # The draw that computing them all at once makes at this point, whatever is computed next.
        rng = np.random.default_rng(random_state.randint(2 ** 31))
        subset = observations[:model_samples]
        x = images(subset) if images is not None else subset
        nchw = np.ascontiguousarray(np.moveaxis(np.asarray(x, np.float32), -1, 1))
        with evaluation_mode(model) as device:
            attempt("reconstruction", lambda: reconstruction_of(model, nchw, batch_size, device))
            if hasattr(model, "encode"):
                attempt("sampled_tc", lambda: sampled_tc_of(model, nchw, rng, batch_size, device))
            else:
                skipped["sampled_tc"] = f"{type(model).__name__} has no encode() giving the posterior (mu, logvar)"
    results.update(num_samples=int(num_samples), model_samples=0 if model is None else model_samples,
                   num_codes=int(codes.shape[1]), skipped=skipped, errors=errors)
    return results
