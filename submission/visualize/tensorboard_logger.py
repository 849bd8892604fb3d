"""Optional TensorBoard logging during training through ``torch.utils.tensorboard``: the scalars of each log record and,
now and then, reconstructions and traversals. Without the tensorboard package it says so once and does nothing.

    board = TensorBoardLogger(os.path.join(output_dir, "tensorboard"))
    board.log_record(record)                              # the dict the trainer appends to log.jsonl
    board.log_images(step, model, x[:8])                  # x: float NCHW in [0, 1]
    board.close()
"""
import sys


from .curves import is_number
from .samples import reconstruction_grid, reconstruction_pairs
from .sources import ModelView
from .traversals import latent_traversals, traversal_grid, traversal_values

SKIP = {"step", "event"}


class TensorBoardLogger:
    def __init__(self, log_dir: str, enabled: bool = True):
        self.writer = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:      # torch's writer needs the tensorboard package
            print(f"tensorboard: logging off ({exc})", file=sys.stderr, flush=True)
            return
        self.writer = SummaryWriter(log_dir=log_dir)

    @property
    def enabled(self) -> bool:
        return self.writer is not None

    def log_record(self, record: dict) -> None:
        """Every finite number of a log.jsonl record as a scalar at ``record["step"]``; lists as ``name/i``."""
        if self.writer is None or not is_number(record.get("step")):
            return
        step = int(record["step"])
        for key, value in record.items():
            if key in SKIP:
                continue
            if isinstance(value, list):
                for i, item in enumerate(value):
                    if is_number(item):
                        self.writer.add_scalar(f"{key}/{i}", item, step)
            elif is_number(value):
                self.writer.add_scalar(key, value, step)

    def log_images(self, step: int, model, images, steps: int = 8) -> None:
        """Reconstructions of ``images`` and traversals around the first one's code, from a CPU copy of ``model``."""
        if self.writer is None:
            return
        view = ModelView.from_model(model)
        images = images.detach().float().cpu()
        pairs = reconstruction_pairs(view, images)
        self.writer.add_image("reconstructions", reconstruction_grid(pairs), step, dataformats="HWC")
        base = view.posterior(images[:1])["mu"][0].numpy()
        tiles = latent_traversals(view.decode, base, traversal_values(steps), view.gate())
        self.writer.add_image("traversals", traversal_grid(tiles, view.pruned()), step, dataformats="HWC")

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class TensorBoardHook:
    """The trainer's TensorBoard hook (``training.tensorboard = True``): the scalars of every log record, and images
    after each checkpoint when the time left covers them on top of the trainer's end-of-run reserve. Its own generator
    draws the images, so the training batches are the same with TensorBoard on or off."""

    def __init__(self, log_dir: str, dataset):
        import numpy as np
        self.board = TensorBoardLogger(log_dir, enabled=True)
        self.images = dataset.sample_batch(8, np.random.default_rng(12345))[0].float() / 255
        self.seconds = 0.0

    def on_start(self, trainer) -> None:
        pass

    def on_log(self, record: dict) -> None:
        self.board.log_record(record)

    def on_checkpoint(self, trainer) -> None:
        import time
        if not self.board.enabled or trainer.budget.time_left() - trainer.reserve_s() < 2.0 * self.seconds + 1.0:
            return
        t0 = time.monotonic()
        self.board.log_images(trainer.step_count, trainer.model, self.images)
        trainer.model.train()
        self.seconds = time.monotonic() - t0

    def on_progress(self, fraction: float) -> None:
        pass

    def on_close(self) -> None:
        self.board.close()
