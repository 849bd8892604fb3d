"""The fast path: dlib's metric functions, replayed so that their ~1,000,000 images are rendered and encoded in bulk.

Why the numbers stay identical. In every metric here (FactorVAE, DCI, SAP, MIG, IRS, BetaVAE) the draws from the
metric's ``RandomState`` (which factors, which fixed coordinate) never depend on the representation's outputs: outputs only
enter the scoring. So the evaluator runs each of dlib's metric functions twice, with the same seed:

1. **record**: the dataset is replaced by :class:`KeyedObservations`, which samples factors with the real dataset's own
   ``sample_factors`` (the same draws, in the same order) but hands out each image's flat grid index instead of pixels; a
   stand-in representation records the indices it is asked for and returns noise. Expensive scorers whose results cannot
   change the sampling (DCI's boosted trees, SAP's SVMs) are stubbed during this pass.
2. **encode**: the distinct indices are rendered with the dataset's own ``sample_observations_from_factors`` and encoded
   through the same :func:`~evaluate.representation.representation_function` the reference path uses, DCI's first.
3. **score**: the metric function runs again, for real, and each request is answered from a cache. A request that was
   not recorded, or whose batch size no cache serves (below), is computed on the spot exactly as dlib would, so a metric
   whose sampling did depend on outputs would still get the reference's numbers, only slower.

Why the codes are dlib's, bit for bit. A float code may depend on the batch it was computed in (kernels chosen by batch
size, rows in a batch's remainder handled apart), and whether it does depends on the CPU. So nothing is assumed; per
batch size that dlib uses (16 and 64 at the challenge's settings, plus the remainders at the end of its loops),
:func:`plan_batch_sizes` decides from a probe of sampled requests:

* **bulk**: the codes equal those of big batches: served from one bulk pass over the distinct images of all such sizes;
* **per size**: they differ by float noise: the distinct images of that size's requests are encoded in batches of
  exactly that size (the last one padded), which gives dlib's bits if a code depends on the batch's size only;
* **exact**: :func:`failed_checks` found that it depends on more (the other images, their order) on the sampled
  requests, computed exactly as dlib calls them and compared with the cache bit for bit; or the size has too few
  requests to gain from a cache. Its requests are computed exactly as dlib batches them.

A difference beyond float noise is a fault of the model (batch statistics), refused with one line. The bulk pass runs only
when some size is served from it.

DCI's seven gradient-boosting fits, dlib's slowest step, run in parallel processes (:class:`ParallelImportanceGbt`), each
through dlib's own ``compute_importance_gbt`` on one factor, each starting from the global-RNG state dlib's loop would give
it; they run while the other metrics' images are encoded, the cores shared between the two (:class:`CpuShare`).
"""
import contextlib
import os
import threading

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


def spread(items, count):
    """Up to ``count`` of ``items``, evenly spread from the first to the last (samples over the whole run)."""
    return [items[int(i)] for i in np.unique(np.linspace(0, len(items) - 1, count).astype(int))]


def requests_by_size(requests):
    """Recorded requests grouped by their length (dlib's batch size, or the remainder at the end of a loop)."""
    by_size = {}
    for request in requests:
        by_size.setdefault(len(request), []).append(request)
    return by_size


class CpuShare:
    """How many encoder threads may run now: the cores that DCI's fit processes leave free, so that encoder threads plus
    fit processes never exceed the cores (``busy`` says how many fit processes are running)."""

    def __init__(self, cores, busy=None):
        self.cores, self.busy = max(1, int(cores)), busy

    def threads(self):
        return max(1, self.cores - (self.busy() if self.busy else 0))


def _padded(images, batch_size):
    """``images`` padded, by repeating its first rows, to a whole number of batches of ``batch_size``: every image is
    then encoded in a batch of exactly that size, even at the end (a code may depend on the batch's size)."""
    missing = -len(images) % batch_size
    return images if not missing else np.concatenate([images, np.resize(images[:1], (missing,) + images.shape[1:])])


def _encode_slice(represent, images, batch_size):
    return np.concatenate([represent(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])


def encode_keys(keyed, represent, keys, batch_size, share, label="encoding", slice_batches=8):
    """Codes of the distinct grid indices ``keys``: float32 (len(keys), D), each image in a batch of exactly ``batch_size``.

    The main thread renders slice after slice; model calls run on Python threads with one torch thread each (torch
    releases the GIL), at most ``share.threads()`` at a time, read again before each slice. Small conv nets at these batch
    sizes scale far better this way than with torch's own threads, which also slow down badly on a shared CPU.
    """
    import torch
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
    if len(keys) == 0:
        return None
    step = batch_size * slice_batches
    futures, running = [], set()
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(share.cores) as pool, Progress(label, total=len(keys)) as progress:
            for start in range(0, len(keys), step):
                images = _padded(keyed.images(keys[start:start + step]), batch_size)
                while len(running) >= share.threads():  # re-read: fit processes finish while we encode
                    running = wait(running, timeout=0.5, return_when=FIRST_COMPLETED).not_done
                futures.append(pool.submit(_encode_slice, represent, images, batch_size))
                running.add(futures[-1])
                progress.update(min(step, len(keys) - start))
            codes = np.concatenate([f.result() for f in futures])
    finally:
        torch.set_num_threads(torch_threads)
    return codes[:len(keys)]  # only the last slice is short, so the padding rows are the last rows


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


def caches_for(plan, bulk_batch_size):
    """batch size -> the CodeCache serving it: one shared by the BULK sizes, one of its own for each PER_SIZE size."""
    bulk = CodeCache(bulk_batch_size, f"bulk (batches of {bulk_batch_size})")
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


def failed_checks(samples, caches):
    """Sizes whose sampled requests, computed exactly as dlib calls them, differ from the cache serving that size: a code
    there depends on more than the batch's size (which images share the batch, or their order)."""
    return [size for size, pairs in samples.items() if size in caches
            and any(not np.array_equal(exact, caches[size].lookup(request)) for request, exact in pairs)]


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
    # Forked while DCI's module holds the parallel stand-in: call dlib's own function behind it.
    fit = getattr(dci.compute_importance_gbt, "sequential", dci.compute_importance_gbt)
    np.random.set_state(start_state)
    result = fit(x_train, y_train, x_test, y_test)
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
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method), initializer=_ignore_ctrl_c)


def _ignore_ctrl_c():
    """A worker leaves Ctrl-C to the evaluator (which stops the pool and says so in one line): no worker tracebacks."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class ParallelImportanceGbt:
    """A drop-in for dlib's ``dci.compute_importance_gbt`` that fits the per-factor classifiers in parallel processes.

    dlib fits factor after factor, each fit taking its trees' seeds from numpy's global RNG where the previous one left it.
    Each worker starts from that very state (computed ahead by replaying the seed draws), so every classifier, and so the
    importance matrix, is the one dlib's loop would produce. Each worker checks that its fit consumed exactly the
    predicted draws; if not (another sklearn), the fits are redone the plain way. Small problems run the plain way too.

    While DCI runs beside the encoder, ``submitted`` is set once the fits are in their processes or about to run in this
    one (forking while encoder threads run is avoided), and ``busy()`` says how many processes are still fitting, so that the encoder takes the remaining cores.
    ``own_process``: fit in a worker process even with one worker (this process's cores then go to the encoder).
    ``slots``: a callable giving how many fits may run at once now, so that the encoder keeps its share of the cores.
    """

    def __init__(self, jobs=None, min_work=None, own_process=False, slots=None):
        from disentanglement_lib.evaluation.metrics import dci
        from sklearn import ensemble
        self.sequential = dci.compute_importance_gbt  # dlib's own, captured before the caller patches it
        self.n_estimators = ensemble.GradientBoostingClassifier().n_estimators
        self.jobs, self.own_process = jobs, own_process
        self.slots = slots  # how many fits may run at once now (read again as fits finish); None: one per process
        self.min_work = MIN_PARALLEL_WORK if min_work is None else min_work
        self.submitted = threading.Event()
        self._futures = []

    def busy(self):
        return sum(not future.done() for future in list(self._futures))

    def _submit_as_slots_allow(self, pool, calls):
        """Submit ``calls`` (function, args) in order, no more running at once than ``slots()`` allows; their results."""
        from concurrent.futures import FIRST_COMPLETED, wait
        pending, running = list(calls), set()
        while pending or running:
            limit = self.slots() if self.slots else len(pending) + len(running)
            while pending and len(running) < max(1, limit):
                fn, args = pending.pop(0)
                self._futures.append(pool.submit(fn, *args))
                running.add(self._futures[-1])
            self.submitted.set()  # the processes exist now: the encoder can start its threads
            running = wait(running, timeout=0.5, return_when=FIRST_COMPLETED).not_done
        return [future.result() for future in self._futures]

    def __call__(self, x_train, y_train, x_test, y_test):
        try:
            return self._fit(x_train, y_train, x_test, y_test)
        finally:
            self.submitted.set()

    def _fit(self, x_train, y_train, x_test, y_test):
        num_factors = y_train.shape[0]
        trees = [_trees_per_fit(y_train[i], self.n_estimators) for i in range(num_factors)]
        workers = max(1, min(num_factors, self.jobs or available_cpus()))
        if (workers == 1 and not self.own_process) or x_train.shape[1] * sum(trees) < self.min_work:
            self.submitted.set()  # the encoder may go on beside it (sklearn's tree builder releases the GIL)
            return self.sequential(x_train, y_train, x_test, y_test)
        states = [np.random.get_state()]
        for count in trees:
            states.append(_advance(states[-1], count))
        # The largest fits first: they are the long poles.
        order = sorted(range(num_factors), key=lambda i: -trees[i])
        log(f"DCI: fitting {num_factors} gradient-boosting classifiers on {workers} process{'es' * (workers > 1)}")
        with _process_pool(workers) as pool:
            self._futures = []
            fits = self._submit_as_slots_allow(pool, [(_fit_one_factor, (x_train, y_train[i:i + 1], x_test,
                                                                         y_test[i:i + 1], states[i], states[i + 1]))
                                                      for i in order])
        if not all(as_predicted for _, as_predicted in fits):
            log("DCI: sklearn drew from numpy's RNG differently than predicted; refitting one factor after another")
            np.random.set_state(states[0])
            return self.sequential(x_train, y_train, x_test, y_test)
        importance_matrix = np.zeros((x_train.shape[0], num_factors), dtype=np.float64)
        train_acc, test_acc = [0.0] * num_factors, [0.0] * num_factors
        for i, ((importance, train, test), _) in zip(order, fits):
            importance_matrix[:, i] = importance[:, 0]
            train_acc[i], test_acc[i] = train, test
        np.random.set_state(states[-1])  # where dlib's loop leaves it
        return importance_matrix, np.mean(train_acc), np.mean(test_acc)
