"""Everything a run leaves on disk, in one place:

* atomic writes (``atomic_write`` and its text/JSON/bytes/copy/directory forms);
* the job directory's layout (``JobLayout``);
* the trainer's checkpoint format (``save_checkpoint``, ``load_checkpoint``, ``load_latest_checkpoint``: the last two are
  kept, and a damaged latest one falls back to the previous);
* the one model-file loader (``load_model_file``: TorchScript, or a checkpoint read with ``weights_only=True``) and the
  representation wrapper every export and evaluation runs;
* the leaderboard's keys and labels, and ``scores.json``;
* the run lock that keeps two runs out of one output directory.

Atomic: a file is written to a temporary name in its own directory, flushed to disk, then renamed over the target, so a
reader (or a rerun after a kill, a full disk or a power cut) sees the old file or the new one, never half of one. A failed
write removes its temporary file and leaves the old file as it was.
"""
import dataclasses
import errno
import json
import os
import shutil
import tempfile
import zipfile

import torch
from torch import nn

CHECKPOINT_NAME = "checkpoint.pt"
PREVIOUS_CHECKPOINT_NAME = "checkpoint.prev.pt"
CHECKPOINT_FORMAT = 1
LOCK_NAME = ".run.lock"

# The leaderboard: (scores.json key, label), in the challenge's order; the keys dlib writes are in evaluate.metrics.
LEADERBOARD = (("factor_vae_metric", "FactorVAE"), ("dci", "DCI"), ("sap_score", "SAP"), ("mig", "MIG"), ("irs", "IRS"))
LEADERBOARD_KEYS = tuple(key for key, _ in LEADERBOARD)
LABELS = dict(LEADERBOARD)


_UMASK = os.umask(0o022)
os.umask(_UMASK)


class ArtifactError(ValueError):
    """A file that is missing, unreadable, untrusted or of the wrong kind: one line for a person, naming it."""


def _first_line(exc) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


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
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
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
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


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

    export = property(lambda self: self._at("representation", "pytorch_model.pt"))
    train_dir = property(lambda self: self._at("train"))
    pretrain_dir = property(lambda self: self._at("pretrain"))
    scores = property(lambda self: self._at("scores.json"))
    evaluation_run = property(lambda self: self._at("evaluation_run.json"))
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


# ------------------------------------------------------------------------------------------------------ checkpoints
def save_checkpoint(state: dict, path: str) -> None:
    """Write a checkpoint atomically and keep the one it replaces as ``checkpoint.prev.pt`` (via a hard link, so some
    complete checkpoint is at ``path`` at every moment)."""
    previous = os.path.join(os.path.dirname(os.path.abspath(path)), PREVIOUS_CHECKPOINT_NAME)

    def keep_previous(_tmp):
        if os.path.exists(path):
            link = f"{previous}.tmp-{os.getpid()}"
            if os.path.exists(link):
                os.remove(link)
            os.link(path, link)
            os.replace(link, previous)

    atomic_write(path, lambda f: torch.save(state, f), check=keep_previous)


def load_checkpoint(path: str) -> dict:
    """A trainer checkpoint, read on the CPU with ``weights_only=True`` (no code in the file can run); ArtifactError
    (one line naming the file) when it is missing, unreadable, untrusted or not the trainer's format."""
    if not os.path.isfile(path):
        raise ArtifactError(f"checkpoint {path} does not exist: expected a file written by the trainer")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ArtifactError(f"checkpoint {path} is unreadable or untrusted ({_first_line(exc)[:160]}): expected a "
                            f"trainer checkpoint, which holds only tensors and plain values") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ArtifactError(f"checkpoint {path} has no format {CHECKPOINT_FORMAT} header: expected a file written by "
                            f"the trainer")
    return checkpoint


def load_latest_checkpoint(run_dir: str):
    """(checkpoint, path, note) of the newest readable checkpoint in ``run_dir``, or (None, None, None) when there is
    none. A damaged latest file falls back to the previous one, and ``note`` says so in one line; when both are
    damaged it raises (never a silent start from scratch)."""
    latest = os.path.join(run_dir, CHECKPOINT_NAME)
    previous = os.path.join(run_dir, PREVIOUS_CHECKPOINT_NAME)
    if not os.path.exists(latest) and not os.path.exists(previous):
        return None, None, None
    try:
        return load_checkpoint(latest), latest, None
    except ArtifactError as exc:
        problem = str(exc)
    if not os.path.exists(previous):
        raise ArtifactError(f"{problem}; no previous checkpoint to fall back to: remove {run_dir} to start afresh")
    try:
        checkpoint = load_checkpoint(previous)
    except ArtifactError:
        raise ArtifactError(f"{problem}; the previous checkpoint {previous} cannot be read either: remove {run_dir} to "
                            f"start afresh") from None
    return checkpoint, previous, (f"checkpoint {latest} cannot be read (damaged or not the trainer's); resuming from "
                                  f"the previous one, {previous} (step {checkpoint.get('step')})")


def check_architecture(checkpoint: dict, model, path: str) -> None:
    """A checkpoint fits a model when its architecture (``model_config``) equals the one the model has."""
    found, expected = checkpoint.get("model_config"), model.config()
    if found != expected:
        raise ArtifactError(f"checkpoint {path} holds architecture {json.dumps(found, sort_keys=True)}, but the recipe "
                            f"builds {json.dumps(expected, sort_keys=True)}: expected the same model")


def clone_state(tree):
    """A deep copy of a state tree (a snapshot), tensors detached and cloned."""
    import copy
    if isinstance(tree, torch.Tensor):
        return tree.detach().clone()
    if isinstance(tree, dict):
        return {k: clone_state(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(clone_state(v) for v in tree)
    return copy.deepcopy(tree)


# ------------------------------------------------------------------------------------------------------ model files
class RepresentationModule(nn.Module):
    """What the evaluator runs: images in, the model's deterministic representation (PVAE: gated means) out, float32."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.representation(x.float()).float()


def model_file_kind(path: str):
    """'torchscript', 'checkpoint' or None, from the zip archive's member names (both formats are zip files)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return None
    if any("/code/" in n or n.endswith("/constants.pkl") for n in names):
        return "torchscript"
    if any(n.endswith("/data.pkl") for n in names):
        return "checkpoint"
    return None


def model_from_checkpoint(checkpoint: dict, path: str):
    """The kit model a checkpoint describes (``model_config``), with its weights."""
    from submission.models import build_model
    if "model_config" not in checkpoint or "model" not in checkpoint:
        raise ArtifactError(f"checkpoint {path} has no model_config/model entries: expected a trainer checkpoint")
    try:
        model = build_model(checkpoint["model_config"])
        model.load_state_dict(checkpoint["model"])
    except Exception as exc:
        raise ArtifactError(f"checkpoint {path} does not rebuild its model ({_first_line(exc)[:160]})") from None
    return model


def load_model_file(path: str):
    """The one loader for a model file: (module, kind, checkpoint).

    * a TorchScript export: (the scripted module on the CPU, "torchscript", None);
    * a trainer checkpoint (or a directory holding ``checkpoint.pt``): (the rebuilt kit model, "checkpoint", the dict),
      read with ``weights_only=True``: a pickle that would run code is refused, not run.
    Anything else is an ArtifactError naming the file.
    """
    if os.path.isdir(path):
        path = os.path.join(path, CHECKPOINT_NAME)
    if not os.path.isfile(path):
        raise ArtifactError(f"model file {path}: no such file; expected a TorchScript pytorch_model.pt or a trainer "
                            f"checkpoint.pt")
    if model_file_kind(path) == "checkpoint":
        checkpoint = load_checkpoint(path)
        return model_from_checkpoint(checkpoint, path), "checkpoint", checkpoint
    try:
        module = torch.jit.load(path, map_location="cpu")
    except Exception as exc:
        raise ArtifactError(f"model file {path}: torch.jit.load cannot read it ({_first_line(exc)[:160]}); expected a "
                            f"TorchScript module saved with torch.jit.save, or a trainer checkpoint") from None
    return module.eval(), "torchscript", None


# ------------------------------------------------------------------------------------------------------ scores
def write_scores(scores: dict, path: str) -> None:
    atomic_write_json({key: scores.get(key) for key in LEADERBOARD_KEYS}, path)


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


# ------------------------------------------------------------------------------------------------------ run lock
def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """``with RunLock(output_dir):`` one run per output directory. A second run refuses with one line naming the first;
    a lock left by a process that no longer exists (a crash, a kill) is taken over."""

    def __init__(self, directory: str, what: str = "run"):
        self.path, self.what = os.path.join(directory, LOCK_NAME), what

    def __enter__(self):
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        for _ in range(3):
            if self._create():
                return self
            owner = self._owner()
            if owner is not None and owner != os.getpid() and _alive(owner):
                raise ArtifactError(f"output directory {os.path.dirname(self.path)} is in use by another {self.what} "
                                    f"(PID {owner}, lock {self.path}): wait for it or choose another output")
            try:                           # stale: its process is gone
                os.remove(self.path)
            except FileNotFoundError:
                pass
        raise ArtifactError(f"could not take the lock {self.path}: another process keeps recreating it")

    def _create(self) -> bool:
        """Create the lock file with our PID in it, in one step (link a finished temporary file): False if it exists."""
        tmp = f"{self.path}.{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(f"{os.getpid()}\n")
        try:
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        finally:
            os.remove(tmp)

    def _owner(self):
        try:
            with open(self.path) as f:
                return int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def __exit__(self, *exc):
        if self._owner() == os.getpid():
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass
        return False
