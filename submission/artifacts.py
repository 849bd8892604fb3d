"""Everything a run leaves on disk, in one place: atomic writes (here), and, through this module, the checkpoint format,
the model-file loader, the job directory's layout and the leaderboard's keys.

Atomic: every file is written to a temporary name in its own directory, flushed to disk, then renamed over the target,
so a reader (or a rerun after a kill, a full disk or a power cut) sees the old file or the new one, never half of one.
A failed write removes its temporary file and leaves the old file as it was.
"""
import json
import os
import shutil
import tempfile


def atomic_write(path: str, write) -> None:
    """The one atomic write: ``write(file_object)`` fills a temporary file beside ``path``, which then replaces it."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.tmp-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_bytes(data: bytes, path: str) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(text: str, path: str) -> None:
    atomic_write_bytes(text.encode("utf-8"), path)


def atomic_write_json(payload, path: str) -> None:
    atomic_write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", path)


def atomic_copy(src: str, dst: str) -> None:
    with open(src, "rb") as source:
        atomic_write(dst, lambda f: shutil.copyfileobj(source, f, 1 << 20))
