"""The one way the kit applies a model, or any function of a batch, to many inputs: in batches, results concatenated
(the evaluator's encoding, its input check, the extra metrics, the captured factors)."""
import numpy as np


def batched(fn, x, batch_size):
    """``fn`` over ``x`` in batches of ``batch_size``, the results concatenated."""
    return np.concatenate([fn(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
