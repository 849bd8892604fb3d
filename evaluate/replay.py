"""Replay and caching: dlib's metric functions, replayed so that their ~1,000,000 images are rendered and encoded in bulk.

Why the sampling is dlib's. In every metric here (FactorVAE, DCI, SAP, MIG, IRS, BetaVAE) the draws from the metric's
``RandomState`` (which factors, which fixed coordinate) never depend on the representation's outputs: outputs only
enter the scoring. So the evaluator runs each of dlib's metric functions twice, with the same seed:

1. **record**: the dataset is replaced by :class:`KeyedObservations`, which samples factors with the real dataset's own
   ``sample_factors`` (the same draws, in the same order) but hands out each image's flat grid index instead of pixels; a
   stand-in representation records the indices it is asked for and returns noise. Expensive scorers whose results cannot
   change the sampling (DCI's boosted trees, SAP's SVMs) are stubbed during this pass.
2. **encode**: the distinct indices are rendered with the dataset's own ``sample_observations_from_factors`` and encoded
   (``evaluate.encoding``) through the same representation function the reference path uses, DCI's first.
3. **score**: the metric function runs again, for real, and each request is answered from a cache.

What the codes are. A float code may depend on the batch it was computed in (kernels chosen by batch size, rows in a
batch's remainder handled apart; on CPUs with AMX, a row's position in the batch), and whether it does depends on the
CPU and the thread count. The two replaying modes differ only there:

* **fast** (the default): every distinct image is encoded once, in batches of the bulk size, and every request is
  answered from that one cache. Before scoring, :func:`measure_deviation` computes sampled requests of every batch size
  exactly as dlib batches them and records how far the cache is from them (max and median |Δ|): the scores' only
  departure from dlib's batching, reported beside them.
* **exact** (``--exact``): bit for bit what dlib's batching gives on this CPU. Per batch size that dlib uses (16 and 64 at
  the challenge's settings, plus the remainders), :func:`plan_batch_sizes` decides from a probe of sampled requests:
  **bulk** (the codes equal those of big batches), **per size** (they differ by float noise: that size's distinct
  images are encoded in batches of exactly that size, exact if a code depends on the batch's size only), or **exact**
  (:func:`failed_checks` found that it depends on more, or the size has too few requests to gain from a cache): its
  requests are computed exactly as dlib batches them, on request (:class:`ServedRepresentation`).

Either way, a difference beyond float noise is a fault of the model (batch statistics), refused with one line. DCI's
seven gradient-boosting fits run in parallel processes (``evaluate.parallel_dci``) while the other metrics' images are
encoded, the cores shared between the two (``evaluate.encoding.CpuShare``).
"""
import contextlib

import numpy as np
from disentanglement_lib.data.ground_truth.ground_truth_data import GroundTruthData

from submission.data.factor_grid import factors_to_index, index_to_factors

from evaluate.encoding import encode_keys
from evaluate.errors import EvaluationError
from evaluate.process_state import patched
from evaluate.progress import log
from evaluate.representation import BATCH_TOLERANCE


class KeyedObservations(GroundTruthData):
    """``dataset`` as the metrics see it while replaying: the same factor draws; observations are flat grid indices."""

    def __init__(self, dataset):
        self.dataset = dataset
        self.sizes = tuple(int(s) for s in dataset.factors_num_values)

    @property
    def num_factors(self):
        return self.dataset.num_factors

    @property
    def factors_num_values(self):
        return self.dataset.factors_num_values

    @property
    def observation_shape(self):
        return self.dataset.observation_shape

    def sample_factors(self, num, random_state):
        return self.dataset.sample_factors(num, random_state)

    def sample_observations_from_factors(self, factors, random_state):
        del random_state  # the real dataset ignores it too: check_replayable() makes sure
        return factors_to_index(factors, self.sizes)

    def images(self, keys):
        """The real observations (float32 NHWC in [0, 1]) of the grid indices ``keys``."""
        factors = index_to_factors(keys, self.sizes)
        return self.dataset.sample_observations_from_factors(factors, np.random.RandomState(0))


def check_replayable(dataset, num=32):
    """None if the dataset can be replayed (observations depend on factors only; sampling goes through
    ``sample_factors``); otherwise the reason, and the caller falls back to the reference path."""
    keyed = KeyedObservations(dataset)
    real_state, keyed_state = np.random.RandomState(11), np.random.RandomState(11)
    factors, observations = dataset.sample(num, real_state)
    keyed_factors, keys = keyed.sample(num, keyed_state)
    if not np.array_equal(factors, keyed_factors) or real_state.randint(1 << 30) != keyed_state.randint(1 << 30):
        return "its sample() draws differently from sample_factors()"
    if not np.array_equal(np.asarray(observations, dtype=np.float32), keyed.images(keys)):
        return "its observations are random given the factors"
    return None


@contextlib.contextmanager
def scorers_stubbed():
    """While recording: skip the scorers that cost time but draw nothing from the metric's RandomState."""
    from disentanglement_lib.evaluation.metrics import dci, sap_score

    def no_importance(x_train, y_train, x_test, y_test):
        return np.zeros((x_train.shape[0], y_train.shape[0])), 0.0, 0.0

    def no_score_matrix(mus, ys, mus_test, ys_test, continuous_factors):
        return np.zeros((mus.shape[0], ys.shape[0]))

    with patched(dci, "compute_importance_gbt", no_importance), \
            patched(sap_score, "compute_score_matrix", no_score_matrix):
        yield


class RequestRecorder:
    """A stand-in representation: records the requested grid indices, returns noise of the right shape."""

    def __init__(self, num_codes):
        self.num_codes = num_codes
        self.requests = []
        self._rng = np.random.default_rng(0)

    def __call__(self, keys):
        keys = np.array(keys, dtype=np.int64)
        self.requests.append(keys)
        return self._rng.standard_normal((len(keys), self.num_codes)).astype(np.float32)


def spread(items, count):
    """Up to ``count`` of ``items``, evenly spread from the first to the last (samples over the whole run)."""
    return [items[int(i)] for i in np.unique(np.linspace(0, len(items) - 1, count).astype(int))]


def requests_by_size(requests):
    """Recorded requests grouped by their length (dlib's batch size, or the remainder at the end of a loop)."""
    by_size = {}
    for request in requests:
        by_size.setdefault(len(request), []).append(request)
    return by_size


class CodeCache:
    """Codes of sorted, distinct grid indices, filled in parts (DCI's images first, the rest while DCI's fits run)."""

    def __init__(self, batch_size, label):
        self.batch_size, self.label = batch_size, label
        self.keys = np.zeros(0, np.int64)
        self.codes = None

    def missing(self, keys):
        return np.setdiff1d(np.unique(keys), self.keys, assume_unique=True)

    def add(self, keys, codes):
        if codes is None:
            return
        keys = np.concatenate([self.keys, keys])
        codes = codes if self.codes is None else np.concatenate([self.codes, codes])
        order = np.argsort(keys, kind="stable")
        self.keys, self.codes = keys[order], codes[order]

    def lookup(self, keys):
        """The cached codes of ``keys`` (in that order), or None if any is missing."""
        if not len(self.keys):
            return None
        where = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        return self.codes[where] if np.array_equal(self.keys[where], keys) else None


# How each batch size's requests are answered (see plan_batch_sizes).
BULK, PER_SIZE, EXACT = "bulk", "per_size", "exact"


def _worst_difference(pairs):
    return max((float(np.abs(a - b).max()) for a, b in pairs if not np.array_equal(a, b)), default=0.0)


def plan_batch_sizes(keyed, represent, by_size, bulk_batch_size, share, per_size=16):
    """How to answer each batch size's requests bit for bit as dlib's calls would, decided from a cheap probe.

    For each size, ``per_size`` requests spread over the run are computed exactly as dlib calls them (their codes are
    kept: ``samples``), and their images are also encoded the bulk way (other neighbours, batches of
    ``bulk_batch_size``). Equal bit for bit: the size is served from the bulk pass (BULK). Different by float noise: its
    distinct images are encoded in batches of exactly that size (PER_SIZE), which is exact if a code depends on the batch's
    size only; :func:`failed_checks` verifies that later. A size with no more requests than the probe would take is
    answered per request (EXACT). A larger difference is a fault of the model (EvaluationError).

    Returns (size -> BULK | PER_SIZE | EXACT, size -> [(request, exact codes)]).
    """
    plan, samples = {}, {}
    for size, group in sorted(by_size.items()):
        if len(group) <= per_size:
            plan[size] = EXACT
            continue
        picks = spread(group, per_size)
        samples[size] = [(request, represent(keyed.images(request))) for request in picks]
        probe = CodeCache(bulk_batch_size, "probe")
        keys = np.unique(np.concatenate(picks))
        probe.add(keys, encode_keys(keyed, represent, keys, bulk_batch_size, share, label=f"probing batch size {size}"))
        worst = _worst_difference((exact, probe.lookup(request)) for request, exact in samples[size])
        scale = max(max(float(np.abs(exact).max()) for _, exact in samples[size]), 1.0)
        if worst > BATCH_TOLERANCE * scale:
            raise EvaluationError(f"representation: codes of the same images differ between batch sizes {size} and "
                                  f"{bulk_batch_size} (max |diff| {worst:.3g}); expected each image's code to depend on "
                                  "that image only (eval mode, no batch statistics)")
        plan[size] = BULK if worst == 0.0 else PER_SIZE
        if plan[size] == PER_SIZE:
            log(f"batch size {size}: codes differ from batches of {bulk_batch_size} by float noise (max |diff| "
                f"{worst:.3g}); its {len(group)} requests are served from its own images encoded in batches of {size}")
    return plan, samples


def caches_for(plan, bulk):
    """batch size -> the CodeCache serving it: ``bulk`` for the BULK sizes, one of its own for each PER_SIZE size."""
    return {size: bulk if how == BULK else CodeCache(size, f"batch size {size}")
            for size, how in plan.items() if how != EXACT}


def fill_caches(keyed, represent, requests, caches, share):
    """Encode the images of ``requests`` that are not cached yet, each into the cache serving its batch size (requests of
    sizes no cache serves are left to be computed exactly). Returns {cache label: images encoded}."""
    encoded = {}
    for cache in {id(c): c for c in caches.values()}.values():
        wanted = [request for request in requests if caches.get(len(request)) is cache]
        if not wanted:
            continue
        keys = cache.missing(np.concatenate(wanted))
        cache.add(keys, encode_keys(keyed, represent, keys, cache.batch_size, share, label=f"encoding: {cache.label}"))
        encoded[cache.label] = int(len(keys))
    return encoded


def sample_exact(keyed, represent, by_size, per_size=16):
    """size -> [(request, its codes computed exactly as dlib calls them)] for up to ``per_size`` requests of each batch
    size, spread over the run: what the fast mode measures its cache against."""
    return {size: [(request, represent(keyed.images(request))) for request in spread(group, per_size)]
            for size, group in sorted(by_size.items())}


def measure_deviation(samples, cache):
    """How far ``cache``'s codes are from the sampled requests' exact codes: {"max_abs", "median_abs", "requests",
    "codes"} over every code of every sampled request. A difference beyond float noise (relative to the codes' scale) is
    a fault of the model, refused in one line, as in the exact mode."""
    pairs = [(exact, cache.lookup(request)) for group in samples.values() for request, exact in group]
    if not pairs:
        return {"max_abs": 0.0, "median_abs": 0.0, "requests": 0, "codes": 0}
    differences = np.concatenate([np.abs(exact.astype(np.float64) - cached).ravel() for exact, cached in pairs])
    worst, scale = float(differences.max()), max(max(float(np.abs(exact).max()) for exact, _ in pairs), 1.0)
    if worst > BATCH_TOLERANCE * scale:
        raise EvaluationError(f"representation: codes of the same images differ between dlib's batches and batches of "
                              f"{cache.batch_size} (max |diff| {worst:.3g}); expected each image's code to depend on "
                              "that image only (eval mode, no batch statistics)")
    return {"max_abs": worst, "median_abs": float(np.median(differences)), "requests": len(pairs),
            "codes": int(differences.size)}


def failed_checks(samples, caches):
    """Sizes whose sampled requests, computed exactly as dlib calls them, differ from the cache serving that size: a code
    there depends on more than the batch's size (which images share the batch, or their order)."""
    return [size for size, pairs in samples.items() if size in caches
            and any(not np.array_equal(exact, caches[size].lookup(request)) for request, exact in pairs)]


class ServingGroup:
    """Metrics whose requests are answered one way:

    * "exact": bit for bit as dlib batches them (:func:`plan_batch_sizes`, checked later by :func:`failed_checks`);
    * "fast": every batch size from one cache of each distinct image's code, filled by ``encoder`` (the model, or its
      inference-optimized copy) in batches of ``batch_size``; ``samples`` are requests of each size computed as dlib
      batches them (by ``represent``, the model as dlib calls it), against which :func:`measure_deviation` measures it.
    """

    def __init__(self, how, metrics, requests, keyed, represent, batch_size, share, encoder=None):
        self.how, self.metrics, self.keyed = how, list(metrics), keyed
        self.encoder = encoder or represent
        self.requests = [request for metric in self.metrics for request in requests[metric]]
        self.by_size = requests_by_size(self.requests)
        optimized = " (inference-optimized)" if self.encoder is not represent else ""
        bulk = CodeCache(batch_size, f"bulk{optimized} (batches of {batch_size})")
        if how == "exact":
            self.plan, self.samples = plan_batch_sizes(keyed, represent, self.by_size, batch_size, share)
            self.caches = caches_for(self.plan, bulk)
        else:
            self.plan, self.samples = dict.fromkeys(self.by_size, BULK), sample_exact(keyed, represent, self.by_size)
            self.caches = dict.fromkeys(self.by_size, bulk)
        self.served = ServedRepresentation(keyed, represent, self.caches)

    def fill(self, requests, share):
        """Encode the images of those of ``requests`` that this group serves from a cache: {cache label: images}."""
        return fill_caches(self.keyed, self.encoder, requests, self.caches, share)

    def sampled(self):
        return [request for pairs in self.samples.values() for request, _ in pairs]

    def check(self):
        """After the first fill. Exact: sizes whose sampled requests differ from their cache fall back to request-exact
        encoding (logged). Fast: the measured departure from dlib's batching (None without samples)."""
        if self.how == "fast":
            return measure_deviation(self.samples, next(iter(self.caches.values()))) if self.caches else None
        for size in failed_checks(self.samples, self.caches):
            log(f"batch size {size}: a code depends on more than the batch size (which images share the batch, or "
                f"their order); its {len(self.by_size[size])} requests are computed exactly as dlib batches them")
            self.plan[size] = EXACT
            del self.caches[size]
        return None


class ServedRepresentation:
    """dlib's representation function during the score pass: answers each request from the cache of its batch size,
    or from codes computed ahead exactly as dlib calls them, else computes it on the spot exactly as dlib would."""

    def __init__(self, keyed, represent, caches, exact_ahead=None):
        self.keyed, self.represent = keyed, represent
        self.caches = caches  # batch size -> CodeCache (sizes served in bulk share one)
        self.exact_ahead = exact_ahead if exact_ahead is not None else {}  # request bytes -> codes
        self.served = self.served_ahead = self.computed = 0

    def __call__(self, keys):
        keys = np.asarray(keys, dtype=np.int64)
        cache = self.caches.get(len(keys))
        codes = cache.lookup(keys) if cache is not None else None
        if codes is not None:
            self.served += len(keys)
            return codes
        codes = self.exact_ahead.get(keys.tobytes())
        if codes is not None:
            self.served_ahead += len(keys)
            return codes
        self.computed += len(keys)
        return self.represent(self.keyed.images(keys))
