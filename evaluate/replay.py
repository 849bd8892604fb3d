"""The fast path: dlib's metric functions, replayed so that their ~1,000,000 images are rendered and encoded in bulk.

Why the numbers stay identical. In every metric here (FactorVAE, DCI, SAP, MIG, IRS, BetaVAE) the draws from the
metric's ``RandomState`` (which factors, which fixed coordinate) never depend on the representation's outputs: outputs only
enter the scoring. So the evaluator runs each of dlib's metric functions twice, with the same seed:

1. **record**: the dataset is replaced by :class:`KeyedObservations`, which samples factors with the real dataset's own
   ``sample_factors`` (the same draws, in the same order) but hands out each image's flat grid index instead of pixels; a
   stand-in representation records the indices it is asked for and returns noise. Expensive scorers whose results cannot
   change the sampling (DCI's boosted trees, SAP's SVMs) are stubbed during this pass.
2. **encode**: the distinct indices of all metrics (about 40% of the requests: draws repeat) are rendered with the
   dataset's own ``sample_observations_from_factors`` and encoded in large batches through the same
   :func:`~evaluate.representation.representation_function` the reference path uses.
3. **score**: the metric function runs again, for real, and each request is answered from the cache. A request that was
   not recorded, or whose batch size was not verified (below), is computed on the spot exactly as dlib would, so a metric
   whose sampling did depend on outputs would still get the reference's numbers, only slower.

Codes computed in a big batch equal codes computed at dlib's batch sizes only if the model's per-image output does not
depend on the batch. :func:`verify_batch_sizes` checks that bit for bit on real requests of every size dlib uses; a size that
differs by float noise is served exactly (computed per request), and a larger difference is a fault of the model.

DCI's seven gradient-boosting fits, dlib's slowest step, run in parallel processes (:func:`importance_gbt_parallel`), each
through dlib's own ``compute_importance_gbt`` on one factor, each starting from the global-RNG state dlib's loop would give it.
"""
import contextlib
import os

import numpy as np
from disentanglement_lib.data.ground_truth.ground_truth_data import GroundTruthData

from evaluate.errors import EvaluationError
from evaluate.progress import Progress, log
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
        return np.ravel_multi_index(np.asarray(factors, dtype=np.int64).T, self.sizes).astype(np.int64)

    def images(self, keys):
        """The real observations (float32 NHWC in [0, 1]) of the grid indices ``keys``."""
        factors = np.stack(np.unravel_index(np.asarray(keys, dtype=np.int64), self.sizes), axis=1).astype(np.int64)
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
def patched(module, name, replacement):
    """Temporarily replace ``module.name`` (a dlib helper looked up at call time)."""
    original = getattr(module, name)
    setattr(module, name, replacement)
    try:
        yield
    finally:
        setattr(module, name, original)


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


def encode_all(keyed, represent, keys, batch_size, threads=None, chunk_batches=16):
    """Codes of the sorted, distinct grid indices ``keys``: float32 (len(keys), D), ``batch_size`` images per call.

    The main thread renders chunk after chunk; model calls run on ``threads`` Python threads with one torch thread each
    (torch releases the GIL). Small conv nets at these batch sizes scale far better this way than with torch's own
    threads, which also slow down badly on a CPU shared with other jobs.
    """
    import torch
    from concurrent.futures import ThreadPoolExecutor
    threads = max(1, threads or available_cpus())
    chunk = batch_size * chunk_batches
    pending, codes = [], []
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(threads) as pool, Progress("encoding distinct images", total=len(keys)) as progress:
            for start in range(0, len(keys), chunk):
                images = keyed.images(keys[start:start + chunk])
                pending.append([pool.submit(represent, images[i:i + batch_size])
                                for i in range(0, len(images), batch_size)])
                if len(pending) > 2:  # bounded look-ahead: at most a few chunks of images in memory
                    codes.extend(f.result() for f in pending.pop(0))
                progress.update(len(images))
            for futures in pending:
                codes.extend(f.result() for f in futures)
    finally:
        torch.set_num_threads(torch_threads)
    return np.concatenate(codes) if codes else np.zeros((0, 0), np.float32)


class CachedRepresentation:
    """dlib's representation function during the score pass: answers from the cache, else computes exactly."""

    def __init__(self, keyed, represent, keys, codes, verified_sizes):
        self.keyed, self.represent = keyed, represent
        self.keys, self.codes = keys, codes
        self.verified_sizes = set(verified_sizes)
        self.computed = 0

    def __call__(self, keys):
        keys = np.asarray(keys, dtype=np.int64)
        if len(keys) in self.verified_sizes and len(self.keys):
            where = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
            if np.array_equal(self.keys[where], keys):
                return self.codes[where]
        self.computed += len(keys)
        return self.represent(self.keyed.images(keys))


def verify_batch_sizes(keyed, represent, requests, keys, codes, bulk_batch_size, per_size=8):
    """Batch sizes whose recorded requests, computed exactly as dlib calls them, equal the bulk codes bit for bit.

    Checks ``per_size`` requests of each size, spread over the run. Raises EvaluationError when a difference exceeds
    float noise (the model's output then depends on the batch).
    """
    by_size = {}
    for request in requests:
        by_size.setdefault(len(request), []).append(request)
    verified = []
    for size, group in sorted(by_size.items()):
        picks = [group[int(i)] for i in np.unique(np.linspace(0, len(group) - 1, per_size).astype(int))]
        worst = 0.0
        for request in picks:
            exact = represent(keyed.images(request))
            cached = codes[np.searchsorted(keys, request)]
            if not np.array_equal(exact, cached):
                worst = max(worst, float(np.abs(exact - cached).max()))
                scale = max(float(np.abs(exact).max()), 1.0)
                if worst > BATCH_TOLERANCE * scale:
                    raise EvaluationError(f"representation: codes of the same images differ between batch sizes "
                                          f"{size} and {bulk_batch_size} (max |diff| {worst:.3g}); expected each image's "
                                          "code to depend on that image only (eval mode, no batch statistics)")
        if worst == 0.0:
            verified.append(size)
        else:
            log(f"batch size {size}: codes differ from the bulk pass by float noise (max |diff| {worst:.3g}); "
                f"those {len(group)} requests are computed exactly as dlib batches them")
    return verified


# Each tree sklearn grows seeds its splitter with one ``randint(0, RAND_R_MAX)`` from the estimator's random_state, which
# for dlib's GradientBoostingClassifier() is numpy's global RNG; ties between split candidates are broken with it.
RAND_R_MAX = 2147483647
# Below this much work (samples x trees), starting worker processes costs more than it saves.
MIN_PARALLEL_WORK = 2_000_000


def _trees_per_fit(y, n_estimators):
    """Trees a GradientBoostingClassifier grows on labels ``y``: one per stage for two classes, K per stage for K > 2."""
    num_classes = len(np.unique(y))
    return n_estimators * (num_classes if num_classes > 2 else 1)


def _advance(state, draws):
    """numpy's global-RNG state after ``draws`` tree seeds have been taken from ``state``."""
    rng = np.random.RandomState()
    rng.set_state(state)
    for _ in range(draws):
        rng.randint(0, RAND_R_MAX)
    return rng.get_state()


def _same_state(a, b):
    return a[0] == b[0] and np.array_equal(a[1], b[1]) and tuple(a[2:]) == tuple(b[2:])


def _fit_one_factor(x_train, y_train, x_test, y_test, start_state, end_state):
    """One factor of dlib's DCI in a worker: dlib's ``compute_importance_gbt`` on that factor alone, with numpy's global
    RNG where dlib's sequential loop would have it; also says whether the fit left the RNG where predicted."""
    from disentanglement_lib.evaluation.metrics import dci
    np.random.set_state(start_state)
    result = dci.compute_importance_gbt(x_train, y_train, x_test, y_test)
    return result, _same_state(np.random.get_state(), end_state)


def available_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _process_pool(workers):
    """Worker processes; forked where the platform allows, so that they start at once with dlib (and TF) imported."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method))


def importance_gbt_parallel(jobs=None, min_work=None):
    """A drop-in for dlib's ``dci.compute_importance_gbt`` that fits the per-factor classifiers in parallel processes.

    dlib fits factor after factor, each fit taking its trees' seeds from numpy's global RNG where the previous one left it.
    Each worker starts from that very state (computed ahead by replaying the seed draws), so every classifier, and so the
    importance matrix, is the one dlib's loop would produce. Each worker checks that its fit consumed exactly the
    predicted draws; if not (another sklearn), the fits are redone the plain way. Small problems run the plain way too.
    """
    from disentanglement_lib.evaluation.metrics import dci
    from sklearn import ensemble
    sequential = dci.compute_importance_gbt  # dlib's own, captured before the caller patches it
    n_estimators = ensemble.GradientBoostingClassifier().n_estimators

    def compute_importance_gbt(x_train, y_train, x_test, y_test):
        num_factors = y_train.shape[0]
        trees = [_trees_per_fit(y_train[i], n_estimators) for i in range(num_factors)]
        workers = max(1, min(num_factors, jobs or available_cpus()))
        if workers == 1 or x_train.shape[1] * sum(trees) < (MIN_PARALLEL_WORK if min_work is None else min_work):
            return sequential(x_train, y_train, x_test, y_test)
        states = [np.random.get_state()]
        for count in trees:
            states.append(_advance(states[-1], count))
        # The largest fits first: they are the long poles.
        order = sorted(range(num_factors), key=lambda i: -trees[i])
        log(f"DCI: fitting {num_factors} gradient-boosting classifiers on {workers} processes")
        with _process_pool(workers) as pool:
            futures = [pool.submit(_fit_one_factor, x_train, y_train[i:i + 1], x_test, y_test[i:i + 1], states[i],
                                   states[i + 1]) for i in order]
            fits = [future.result() for future in futures]
        if not all(as_predicted for _, as_predicted in fits):
            log("DCI: sklearn drew from numpy's RNG differently than predicted; refitting one factor after another")
            np.random.set_state(states[0])
            return sequential(x_train, y_train, x_test, y_test)
        importance_matrix = np.zeros((x_train.shape[0], num_factors), dtype=np.float64)
        train_acc, test_acc = [0.0] * num_factors, [0.0] * num_factors
        for i, ((importance, train, test), _) in zip(order, fits):
            importance_matrix[:, i] = importance[:, 0]
            train_acc[i], test_acc[i] = train, test
        np.random.set_state(states[-1])  # where dlib's loop leaves it
        return importance_matrix, np.mean(train_acc), np.mean(test_acc)

    return compute_importance_gbt
