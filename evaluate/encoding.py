"""The encoder's share of the CPU: distinct images encoded on Python threads, as many as the cores that DCI's fit
processes leave free (:class:`CpuShare`), each image in a batch of exactly the requested size."""
import os

import numpy as np

from evaluate.progress import Progress
from submission.metrics.batching import batched


def available_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


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
                futures.append(pool.submit(batched, represent, images, batch_size))
                running.add(futures[-1])
                progress.update(min(step, len(keys) - start))
            codes = np.concatenate([f.result() for f in futures])
    finally:
        torch.set_num_threads(torch_threads)
    return codes[:len(keys)]  # only the last slice is short, so the padding rows are the last rows
