"""What evaluating changes in the process, in one place, and put back on exit, on error too.

dlib's metrics draw from numpy's global RNG (sklearn's estimators), which the evaluator seeds before each metric; the
fast modes swap dlib's module attributes for a while (DCI's gradient-boosting fits; SAP's score matrix while
recording); the encoder runs with one torch thread per Python thread. ``evaluation_state()`` records all three on entry
and restores them on exit; ``patched`` is the one way to swap a dlib attribute.
"""
import contextlib
import importlib

import numpy as np
import torch

# dlib's attributes the evaluator swaps: (module, attribute).
PATCHABLE = (("disentanglement_lib.evaluation.metrics.dci", "compute_importance_gbt"),
             ("disentanglement_lib.evaluation.metrics.sap_score", "compute_score_matrix"))


@contextlib.contextmanager
def patched(module, name, replacement):
    """Temporarily replace ``module.name`` (a dlib helper looked up at call time)."""
    original = getattr(module, name)
    setattr(module, name, replacement)
    try:
        yield
    finally:
        setattr(module, name, original)


def snapshot() -> dict:
    """The process-wide state the evaluator may change: numpy's global RNG, dlib's swappable attributes, torch's
    thread count."""
    attributes = {(module, name): getattr(importlib.import_module(module), name) for module, name in PATCHABLE}
    return {"numpy_rng": np.random.get_state(), "dlib": attributes, "torch_threads": torch.get_num_threads()}


@contextlib.contextmanager
def evaluation_state():
    """``with evaluation_state():`` whatever the block does to the state in :func:`snapshot`, it is put back on exit."""
    saved = snapshot()
    try:
        yield
    finally:
        for (module, name), value in saved["dlib"].items():
            setattr(importlib.import_module(module), name, value)
        np.random.set_state(saved["numpy_rng"])
        torch.set_num_threads(saved["torch_threads"])
