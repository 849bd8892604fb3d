"""Drawing training batches ahead, in a background thread, without changing a single number.

The thread draws from its own copy of the trainer's numpy generator, in order, and hands each batch over with the
generator state from after its draw, i.e. the state that draws the next batch. The consumer sets its generator to that
state, so a checkpoint taken at any step resumes exactly as without prefetching.
"""
import copy
import queue
import threading

import torch


class BatchPrefetcher:
    """Draws ``dataset.sample_batch(batch_size, rng)`` up to ``depth`` batches ahead; ``prepare`` (e.g. uint8 -> float)
    also runs in the thread. An error in the thread is raised by ``get``."""

    def __init__(self, dataset, batch_size: int, rng, depth: int = 2, prepare=None):
        self.dataset, self.batch_size, self.prepare = dataset, int(batch_size), prepare
        self._rng = copy.deepcopy(rng)
        self._queue = queue.Queue(maxsize=max(int(depth), 1))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="batch-prefetch", daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _work(self) -> None:
        try:
            while not self._stop.is_set():
                batch = self.dataset.sample_batch(self.batch_size, self._rng)
                if self.prepare is not None:
                    batch = self.prepare(*batch)
                if not self._put((batch, self._rng.bit_generator.state, None)):
                    return
        except BaseException as exc:     # handed to the consumer, raised there
            self._put((None, None, exc))

    def get(self):
        """(batch, the generator state that draws the batch after it); waits for the thread when it is behind."""
        while True:
            try:
                batch, next_state, error = self._queue.get(timeout=0.5)
                break
            except queue.Empty:
                if not self._thread.is_alive():
                    raise RuntimeError("the batch prefetch thread stopped without a batch") from None
        if error is not None:
            raise error
        return batch, next_state

    def close(self, timeout: float = 2.0) -> bool:
        """Stop the thread; True when it has exited (a draw in progress is finished, then dropped)."""
        self._stop.set()
        while True:                       # unblock a put waiting on a full queue
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout)
        return not self._thread.is_alive()


class BatchFeed:
    """The trainer's batches: drawn from ``dataset`` with the generator ``rng`` (inline, or ``depth`` ahead in a thread),
    made float in [0, 1], channels-last when asked, and moved to ``device``. ``rng`` always holds the state that draws
    the next batch not yet handed out, so checkpointing it resumes exactly."""

    def __init__(self, dataset, batch_size: int, rng, device, channels_last: bool = False, depth: int = 2,
                 log=print):
        self.dataset, self.batch_size, self.rng, self.device = dataset, int(batch_size), rng, device
        self.channels_last, self.depth, self.log = channels_last, int(depth), log
        self._prefetcher = None

    def _prepare_on_host(self, images, factors):
        """The host half of a batch's preparation, run in the thread: float [0, 1] on the CPU, else pinned."""
        if self.device.type == "cpu":
            x = images.float().div_(255.0)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            return x, factors
        return images.pin_memory(), factors.pin_memory()

    def _to_device(self, images, factors):
        x = images.to(self.device, non_blocking=True)
        if not x.is_floating_point():
            x = x.float().div_(255.0)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, factors.to(self.device, non_blocking=True)

    def start(self) -> None:
        """Draw ahead in a background thread from now on (when ``depth`` > 0)."""
        if self.depth > 0 and self._prefetcher is None:
            self._prefetcher = BatchPrefetcher(self.dataset, self.batch_size, self.rng, self.depth,
                                               self._prepare_on_host)

    def stop(self) -> None:
        """Stop the thread; ``rng`` already holds the state of the next batch not handed out."""
        prefetcher, self._prefetcher = self._prefetcher, None
        if prefetcher is not None and not prefetcher.close():
            self.log("the batch prefetch thread is still drawing a batch; it stops after that draw")

    def restart(self) -> None:
        """After ``rng`` was set to another state: drop the batches drawn ahead from the old one."""
        if self._prefetcher is not None:
            self.stop()
            self.start()

    def next(self):
        """The next batch on the device: (float images NCHW in [0, 1], factors)."""
        if self._prefetcher is not None:
            (images, factors), next_state = self._prefetcher.get()
            self.rng.bit_generator.state = next_state
        else:
            images, factors = self.dataset.sample_batch(self.batch_size, self.rng)
        return self._to_device(images, factors)
