"""DCI's gradient-boosting fits in parallel processes, each from the global-RNG state dlib's sequential loop would give it
(the RNG forecast), so that the importance matrix is the one dlib's loop would produce."""
import threading

import numpy as np

from evaluate.encoding import available_cpus
from evaluate.progress import log


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
    one (forking while encoder threads run is avoided), and ``busy()`` says how many processes are still fitting, so
    that the encoder takes the remaining cores.
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
