"""Everything a run leaves on disk apart from tensors, in one torch-free place:

* atomic writes (``atomic_write`` and its text/JSON/bytes/copy/directory forms);
* the job directory's layout and its file names (``JobLayout``);
* the leaderboard's keys and labels, and ``scores.json``;
* the lock that keeps two jobs, runs or studies out of one directory (``RunLock``).

Checkpoints, the one model-file loader and the representation wrapper are ``submission.checkpoints``'s.

Atomic: a file is written to a temporary name in its own directory, flushed to disk, then renamed over the target, so a
reader (or a rerun after a kill, a full disk or a power cut) sees the old file or the new one, never half of one. A failed
write removes its temporary file and leaves the old file as it was.
"""
import dataclasses
import errno
import fcntl
import json
import os
import shutil
import tempfile

CHECKPOINT_NAME = "checkpoint.pt"
PREVIOUS_CHECKPOINT_NAME = "checkpoint.prev.pt"
LOCK_NAME = ".run.lock"
EXPORT_NAME = "pytorch_model.pt"
SCORES_NAME = "scores.json"
EVALUATION_RUN_NAME = "evaluation_run.json"

# The leaderboard: (scores.json key, label), in the challenge's order; the keys dlib writes are in evaluate.metrics.
LEADERBOARD = (("factor_vae_metric", "FactorVAE"), ("dci", "DCI"), ("sap_score", "SAP"), ("mig", "MIG"), ("irs", "IRS"))
LEADERBOARD_KEYS = tuple(key for key, _ in LEADERBOARD)
LABELS = dict(LEADERBOARD)


_UMASK = os.umask(0o022)
os.umask(_UMASK)


class ArtifactError(ValueError):
    """A file that is missing, unreadable, untrusted or of the wrong kind: one line for a person, naming it."""


def first_line(exc, typed: bool = True) -> str:
    """How one error is shown in one line, everywhere: ``"TypeName: the first line of its message"`` (``typed``), or
    the first line alone; the type's name when the message is empty. gin, h5py and Ray add lines of their own."""
    text = str(exc).strip().splitlines()
    if not text:
        return type(exc).__name__
    return f"{type(exc).__name__}: {text[0]}" if typed else text[0]


# ------------------------------------------------------------------------------------------------------ atomic writes
def atomic_write(path: str, write, check=None) -> str:
    """The one atomic write: ``write(file_object)`` fills a temporary file beside ``path``; ``check(temporary_path)``,
    when given, may inspect it (and raise) before it replaces ``path``."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    # The temporary's name carries the writer's PID: remove_dead_temporaries can tell a killed write from a live one.
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.tmp-{os.getpid()}-", dir=directory)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)          # what open() would give, not mkstemp's owner-only 0600
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if check is not None:
            check(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.remove(tmp)
        if is_disk_full(exc) and not isinstance(exc, OSError):
            # torch.save reports a full disk as "[enforce fail at inline_container.cc] unexpected pos": say what it is.
            raise OSError(errno.ENOSPC, "No space left on device", path) from None
        raise
    return path


def atomic_write_bytes(data: bytes, path: str) -> str:
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(text: str, path: str) -> str:
    return atomic_write_bytes(text.encode("utf-8"), path)


def atomic_write_json(payload, path: str) -> str:
    return atomic_write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", path)


def atomic_copy(src: str, dst: str) -> str:
    with open(src, "rb") as source:
        return atomic_write(dst, lambda f: shutil.copyfileobj(source, f, 1 << 20))


def atomic_replace_dir(staging: str, final: str) -> None:
    """Put the finished directory ``staging`` at ``final`` (same parent), replacing an old one: readers see the old
    directory or the new one (between the two renames, none), never a mixture."""
    if os.path.exists(final):
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(final)}.old.", dir=os.path.dirname(final))
        os.replace(final, os.path.join(old, os.path.basename(final)))
        os.replace(staging, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, final)


def _remove_temporaries_where(directory: str, prefix: str, removable) -> int:
    removed = 0
    for name in os.listdir(directory) if os.path.isdir(directory) else ():
        if name.startswith(prefix) and ".tmp-" in name and removable(name):
            try:
                os.remove(os.path.join(directory, name))
                removed += 1
            except OSError:
                pass
    return removed


def remove_temporaries(directory: str) -> int:
    """Remove what killed atomic writes left in ``directory`` (their temporary files); only call it while holding the
    directory's lock, so no write in progress is touched. Returns how many were removed."""
    return _remove_temporaries_where(directory, ".", lambda name: True)


def _writer_alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
        return True                     # alive (this process included): its write may be in progress
    except (ValueError, ProcessLookupError):
        return False                    # a name without a PID, or a dead writer
    except PermissionError:
        return True                     # another user's live process


def remove_dead_temporaries(path: str) -> int:
    """Remove the temporaries that killed atomic writes to ``path`` left, never one a live process is writing (its PID
    is in the name): safe without a lock, e.g. beside a dataset that several processes may convert at once."""
    directory, prefix = os.path.dirname(os.path.abspath(path)), f".{os.path.basename(path)}.tmp-"
    return _remove_temporaries_where(directory, prefix,
                                     lambda name: not _writer_alive(name[len(prefix):].split("-", 1)[0]))


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc``, or an error it was raised from or while handling, is a full disk or quota."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


# ------------------------------------------------------------------------------------------------------ job layout
@dataclasses.dataclass(frozen=True)
class JobLayout:
    """The job directory, ``$AICROWD_OUTPUT_PATH/$AICROWD_EVALUATION_NAME`` (the challenge's layout):

        representation/pytorch_model.pt      the TorchScript export
        pretrain/  train/                    run directories: checkpoint.pt (+ checkpoint.prev.pt), config.gin, log.jsonl
        metrics/<metric>/results/...         dlib's output layout
        scores.json, evaluation_run.json, progress.jsonl, report/report.html
    """
    root: str

    @classmethod
    def of(cls, output_path: str, evaluation_name: str) -> "JobLayout":
        return cls(os.path.abspath(os.path.join(output_path, evaluation_name)))

    @classmethod
    def around(cls, run_dir: str) -> "JobLayout":
        """The job around a run directory (``train/`` or ``pretrain/``), or the directory itself."""
        run_dir = os.path.abspath(run_dir)
        inside = os.path.basename(run_dir) in ("train", "pretrain")
        return cls(os.path.dirname(run_dir) if inside else run_dir)

    def _at(self, *parts) -> str:
        return os.path.join(self.root, *parts)

    export = property(lambda self: self._at("representation", EXPORT_NAME))
    train_dir = property(lambda self: self._at("train"))
    pretrain_dir = property(lambda self: self._at("pretrain"))
    scores = property(lambda self: self._at(SCORES_NAME))
    evaluation_run = property(lambda self: self._at(EVALUATION_RUN_NAME))
    progress_log = property(lambda self: self._at("progress.jsonl"))
    report_dir = property(lambda self: self._at("report"))
    metrics_dir = property(lambda self: self._at("metrics"))


def run_files(run_dir: str) -> dict:
    """A run directory's files: log.jsonl, config.gin, checkpoint.pt; looked for in ``run_dir`` and its ``train/``."""
    names = {"log": "log.jsonl", "config": "config.gin", "checkpoint": CHECKPOINT_NAME}
    found = {}
    for key, name in names.items():
        candidates = (os.path.join(run_dir, name), os.path.join(run_dir, "train", name))
        found[key] = next((p for p in candidates if os.path.isfile(p)), None)
    return found


# ------------------------------------------------------------------------------------------------------ scores
def write_scores(scores: dict, path: str, extras: dict = None) -> None:
    """The five leaderboard numbers, and under ``extras`` the metrics that are never among them (MIC, InfoMEC, ...)."""
    payload = {key: scores.get(key) for key in LEADERBOARD_KEYS}
    if extras:
        payload["extras"] = dict(extras)
    atomic_write_json(payload, path)


def read_scores(path: str) -> dict:
    """The five leaderboard numbers of a ``scores.json`` (None where a metric failed); ArtifactError naming the file."""
    if os.path.isdir(path):
        path = os.path.join(path, "scores.json")
    try:
        with open(path) as f:
            raw = json.load(f)
    except FileNotFoundError:
        raise ArtifactError(f"scores file {path} does not exist: expected `python -m evaluate`'s scores.json") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"scores file {path} is unreadable ({_first_line(exc)}): expected evaluate's "
                            f"scores.json") from None
    if not isinstance(raw, dict):
        raise ArtifactError(f"scores file {path} holds {type(raw).__name__}: expected evaluate's scores.json")
    return {key: (float(raw[key]) if isinstance(raw.get(key), (int, float)) else None) for key in LEADERBOARD_KEYS}


def format_scores(scores: dict) -> str:
    """The leaderboard as a small text table (n/a where a metric failed)."""
    lines = ["metric      score", "---------   ------"]
    for key, label in LEADERBOARD:
        value = scores.get(key)
        lines.append(f"{label:<11} {value:.4f}" if isinstance(value, (int, float)) else f"{label:<11} {'n/a':>6}")
    return "\n".join(lines)




# ------------------------------------------------------------------------------------------------------ the lock
class RunLock:
    """``with RunLock(directory, "job"):`` one holder of a directory at a time: a job, a training run, a study, a shared
    pretraining. A second taker is refused with one line naming the holder's PID (``ArtifactError``), or, with
    ``wait=True``, waits for it.

    It is an ``fcntl.flock`` on ``<directory>/.run.lock``, which holds the holder's PID: the kernel drops the lock when
    its holder dies, so a lock file left by a killed process never blocks anyone, and no two processes can take it at
    once (there is no stale-lock takeover to race). The file is removed on release; a taker that locked a file removed
    under it tries again on the one the path names now."""

    def __init__(self, directory: str, what: str = "run", wait: bool = False, name: str = LOCK_NAME):
        self.directory, self.what, self.wait = os.path.abspath(directory), what, wait
        self.path = os.path.join(self.directory, name)
        self._file = None

    def acquire(self) -> "RunLock":
        os.makedirs(self.directory, exist_ok=True)
        while True:
            handle = open(self.path, "a+")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if self.wait else fcntl.LOCK_NB))
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "unknown"
                handle.close()
                raise ArtifactError(f"{self.directory} is in use by another {self.what} (PID {holder}, lock "
                                    f"{self.path}): wait for it to end or choose another directory") from None
            try:
                current = os.stat(self.path)
            except FileNotFoundError:
                current = None
            if current is not None and os.path.samestat(os.fstat(handle.fileno()), current):
                break
            handle.close()                  # the holder before us removed this file as we locked it: again
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle
        return self

    def release(self) -> None:
        if self._file is None:
            return
        try:
            os.remove(self.path)            # while still holding it, so a waiter on this file retries on a fresh one
        except FileNotFoundError:
            pass
        self._file.close()
        self._file = None

    def __enter__(self):
        return self if self._file is not None else self.acquire()    # a lock already acquired is kept

    def __exit__(self, *exc_info):
        self.release()
        return False


def lock_holder(directory: str, name: str = LOCK_NAME):
    """The PID (text) of the process holding ``directory``'s lock now, or None: tried without waiting, let go at once."""
    path = os.path.join(directory, name)
    try:
        handle = open(path)
    except FileNotFoundError:
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return handle.read().strip() or "unknown"
    return None
