"""Hostile and careless users: a TorchScript file that would run code, a second job on a busy directory, a stale lock
raced by two processes, a damaged checkpoint in the rotation, a full disk inside torch.save, Ctrl-C, relative paths,
bad values. Each gives one line, the right exit code and nothing half-written."""
import errno
import io
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from submission import checkpoints, files
from submission.torchscript_check import UnsafeTorchScript, check_torchscript

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --- TorchScript that runs code --------------------------------------------------------------------------------------
class _FromFile(torch.nn.Module):
    """``forward`` maps a file into memory and writes into it."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def forward(self, x):
        written = torch.from_file(self.path, shared=True, size=16, dtype=torch.uint8)
        written.fill_(65)
        return x.flatten(1)[:, :4] + written[:4].float().sum() * 0


class _Saver(torch.nn.Module):
    """``forward`` writes its input to a file (``aten::save``)."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def forward(self, x):
        torch.save(x, self.path)
        return x.flatten(1)[:, :4]


class _Stateful(torch.nn.Module):
    """A submodule whose ``__setstate__``, which ``torch.jit.load`` runs, overwrites a file's first bytes."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path
        self.buf = torch.zeros(16, dtype=torch.uint8)

    @torch.jit.export
    def __getstate__(self):
        return (self.path, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, bool]):
        self.path = state[0]
        self.training = state[1]
        self.buf = torch.from_file(self.path, shared=True, size=16, dtype=torch.uint8)
        self.buf.fill_(66)

    def forward(self, x):
        return x.flatten(1)[:, :4]


class _Outer(torch.nn.Module):
    def __init__(self, path: str):
        super().__init__()
        self.inner = _Stateful(path)
        self.linear = torch.nn.Linear(4, 4)

    def forward(self, x):
        return self.linear(self.inner(x))


def _crafted(tmp_path, kind):
    target = tmp_path / f"target-{kind.__name__}"
    module = torch.jit.script(kind(str(target)))
    path = tmp_path / f"{kind.__name__}.pt"
    torch.jit.save(module, str(path))
    return str(path), target


def test_the_setstate_attack_is_real_when_loaded_without_the_check(tmp_path):
    """Without the kit's check, merely loading the file overwrites the target: the test files are real attacks."""
    path, target = _crafted(tmp_path, _Outer)
    target.write_bytes(b"precious content, 32 bytes long.")
    torch.jit.load(path)
    assert target.read_bytes().startswith(b"B" * 16)


@pytest.mark.parametrize("kind, call", [(_FromFile, "torch.from_file"), (_Saver, "torch.save"),
                                        (_Outer, "__getstate__")])
def test_a_torchscript_file_that_would_run_code_is_refused_and_writes_nothing(tmp_path, capsys, kind, call):
    from evaluate.__main__ import main as evaluate_main
    path, target = _crafted(tmp_path, kind)
    if kind is _Outer:
        target.write_bytes(b"precious content, 32 bytes long.")
    before = target.read_bytes() if target.exists() else None
    out = tmp_path / "eval"
    assert evaluate_main(["--model", path, "--dataset", "mpi3d_sim_toy", "--output", str(out), "--quick"]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and path in lines[0] and call in lines[0] and "refused" in lines[0], lines
    assert (target.read_bytes() if target.exists() else None) == before          # nothing created, nothing overwritten
    assert not out.exists()
    with pytest.raises(files.ArtifactError, match="refused"):                  # the one loader refuses it everywhere
        checkpoints.load_model_file(path)


def _edited_saver(tmp_path, name, code=lambda text: text, pickle=None):
    """The ``_Saver`` archive rewritten: ``code`` edits its serialized code, ``pickle`` replaces its constants.pkl."""
    import zipfile
    path, _ = _crafted(tmp_path, _Saver)
    crafted = tmp_path / name
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(crafted, "w") as out:
        for item in source.infolist():
            data = source.read(item.filename)
            if "/code/" in item.filename and item.filename.endswith(".py"):
                data = code(data)
            if pickle is not None and item.filename.endswith("constants.pkl"):
                data = pickle
            out.writestr(item, data)
    return str(crafted)


def test_pickles_that_name_other_objects_are_refused(tmp_path):
    crafted = _edited_saver(tmp_path, "crafted.pt", lambda text: text.replace(b"    torch.save(x, path)\n", b""),
                            pickle=b"\x80\x02cos\nsystem\nq\x00.")          # a GLOBAL to os.system
    with pytest.raises(UnsafeTorchScript, match=r"constants\.pkl refers to os\.system"):
        check_torchscript(crafted)


def test_a_module_defined_in_a_function_or_a_script_passes_the_check(tmp_path):
    """Its class is pickled as ``__torch__.Name`` (no package): one of the archive's classes, not a foreign object."""
    class Scaled(torch.nn.Module):
        def forward(self, x):
            return x.flatten(1)[:, :3] * 2.0

    Scaled.__module__ = "__main__"          # as in a script run with `python script.py`
    path = str(tmp_path / "local.pt")
    torch.jit.save(torch.jit.trace(Scaled().eval(), torch.rand(2, 3, 64, 64)), path)
    check_torchscript(path)


def test_every_recipes_export_passes_the_check(tmp_path):
    """The kit's own exports, every recipe's (the check also runs inside every export's verification)."""
    import gin
    from submission.export import export_representation
    from submission.models import make_model
    from submission.train import parse_gin
    recipes = sorted(name[:-4] for name in os.listdir(os.path.join(ROOT, "submission", "configs"))
                     if name.endswith(".gin"))
    assert len(recipes) >= 10
    for recipe in recipes:
        parse_gin([os.path.join(ROOT, "submission", "configs", f"{recipe}.gin")], [])
        path = export_representation(make_model(), str(tmp_path / f"{recipe}.pt"))
        check_torchscript(path)
        gin.clear_config()


# --- the job lock ----------------------------------------------------------------------------------------------------
def _holder(directory, what="job"):
    """A process that holds ``directory``'s lock until killed."""
    code = (f"import sys, time; sys.path.insert(0, {ROOT!r}); from submission.files import RunLock; "
            f"lock = RunLock({str(directory)!r}, {what!r}); lock.acquire(); print('held', flush=True); "
            "time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_job_on_a_busy_directory_is_refused_before_anything_is_written(tmp_path):
    job = tmp_path / "out" / "busy"
    holder = _holder(job)
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AICROWD_", "MODEL", "BUDGET", "SEED"))}
        env.update(AICROWD_OUTPUT_PATH=str(tmp_path / "out"), AICROWD_EVALUATION_NAME="busy", BUDGET="1m")
        result = subprocess.run([sys.executable, "-m", "submission.pipeline"], cwd=ROOT, env=env, capture_output=True,
                                text=True, timeout=120)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 2 and len(lines) == 1, result.stderr
        assert f"PID {holder.pid}" in lines[0] and "in use by another job" in lines[0]
        assert sorted(os.listdir(job)) == [files.LOCK_NAME]                      # no progress.jsonl, nothing else
    finally:
        holder.kill()
        holder.wait()


def test_two_processes_racing_for_a_stale_lock_never_both_hold_it():
    """The harness that found 13 double holds in 100 trials with the old stale-lock takeover: 0 of 200 now, and a
    stale lock never keeps both out (``bench/faults.py`` runs the same harness)."""
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    try:
        from faults import stale_lock_race
    finally:
        sys.path.pop(0)
    assert stale_lock_race(200, racers=2) == (0, 0)


# --- checkpoints ---------------------------------------------------------------------------------------------------
TINY = ["--gin_file", "submission/configs/beta_vae.gin", "--gin_binding", "model.architecture = 'mlp'",
        "--gin_binding", "model.latent_dim = 4", "--gin_binding", "training.batch_size = 8",
        "--gin_binding", "training.precision = 'fp32'", "--dataset", "mpi3d_sim_toy", "--no_report"]


def _train(tmp_path, steps):
    from submission import train
    return train.main([*TINY, "--output", str(tmp_path / "train"), "--budget", "120s", "--max_steps", str(steps),
                       "--export", str(tmp_path / "representation" / "pytorch_model.pt")])


def test_a_checkpoint_that_failed_to_load_never_becomes_the_fallback(tmp_path):
    run = tmp_path / "train"
    assert _train(tmp_path, 4) == 0 and _train(tmp_path, 8) == 0          # checkpoint.pt 8, checkpoint.prev.pt 4
    with open(run / "checkpoint.pt", "r+b") as f:
        f.truncate(os.path.getsize(run / "checkpoint.pt") // 2)
    assert _train(tmp_path, 10) == 0                                       # resumes from prev (4), saves 10
    assert checkpoints.load_checkpoint(str(run / "checkpoint.prev.pt"))["step"] == 4   # the damaged file was not kept
    assert _train(tmp_path, 12) == 0
    assert checkpoints.load_checkpoint(str(run / "checkpoint.prev.pt"))["step"] == 10
    assert checkpoints.load_checkpoint(str(run / "checkpoint.pt"))["step"] == 12


class _FillsUp(io.RawIOBase):
    """A file on a disk that fills up after ``room`` bytes."""

    def __init__(self, inner, room):
        self.inner, self.room = inner, room

    def writable(self):
        return True

    def write(self, data):
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.inner.write(data)

    def flush(self):
        self.inner.flush()

    def fileno(self):
        return self.inner.fileno()

    def close(self):
        self.inner.close()
        super().close()


def test_a_full_disk_inside_torch_save_is_said_as_such_and_the_old_checkpoint_stays(tmp_path, monkeypatch):
    path = str(tmp_path / "checkpoint.pt")
    checkpoints.save_checkpoint({"format": 1, "step": 1, "w": torch.zeros(10)}, path)
    before = open(path, "rb").read()
    real = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda fd, mode="r", *a, **k: _FillsUp(real(fd, mode, *a, **k), 4096))
    with pytest.raises(OSError) as error:
        checkpoints.save_checkpoint({"format": 1, "step": 2, "w": torch.zeros(100000)}, path)
    monkeypatch.undo()
    assert error.value.errno == errno.ENOSPC and "No space left on device" in str(error.value)
    assert "enforce fail" not in str(error.value) and "\n" not in str(error.value)
    assert open(path, "rb").read() == before
    assert [name for name in os.listdir(tmp_path) if ".tmp-" in name] == []


# --- Ctrl-C ----------------------------------------------------------------------------------------------------------
def _ctrl_c_default():
    """Ctrl-C as at a terminal: a suite started in the background by a shell inherits SIGINT ignored, and so would the
    processes under test."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt_when(proc, ready, timeout=120):
    start = time.monotonic()
    while not ready():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - start < timeout
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    return proc.communicate(timeout=120)


def test_ctrl_c_in_training_saves_skips_the_report_and_exits_130(tmp_path):
    run = tmp_path / "train"
    args = [a for a in TINY if a != "--no_report"]
    proc = subprocess.Popen([sys.executable, "-m", "submission.train", *args, "--output", str(run), "--budget", "5m",
                             "--max_steps", "100000"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=_ctrl_c_default)
    seen = []       # the export is written before the first step: give the loop a second of steps after it

    def training():
        if (tmp_path / "representation" / "pytorch_model.pt").exists():
            seen.append(time.monotonic())
        return bool(seen) and time.monotonic() - seen[0] > 1.0

    _, err = _interrupt_when(proc, training)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "stopped by SIGINT" in err.strip().splitlines()[-1]
    assert checkpoints.load_checkpoint(str(run / "checkpoint.pt"))["step"] > 0
    assert not (run / "report").exists() and not (tmp_path / "report").exists()


def test_ctrl_c_in_evaluation_is_one_line_exit_130_and_no_partial_results(tmp_path):
    from submission.export import export_representation
    from submission.models import build_model
    model = build_model(dict(kind="vae", architecture="mlp", latent_dim=4, channels=3))
    export = export_representation(model, str(tmp_path / "pytorch_model.pt"))
    out = tmp_path / "eval"
    proc = subprocess.Popen([sys.executable, "-m", "evaluate", "--model", export, "--dataset", "mpi3d_sim_toy",
                             "--output", str(out), "--quick"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_ctrl_c_default)
    _, err = _interrupt_when(proc, lambda: (out / "metrics").exists())
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("[")]
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert lines[-1].startswith("evaluate: interrupted (Ctrl-C)")
    assert not (out / "scores.json").exists() and os.listdir(out / "metrics") == []


# --- inputs that got past validation ---------------------------------------------------------------------------------
def test_relative_paths_are_the_callers(tmp_path):
    from submission.pipeline import ConfigError, read_config
    caller = tmp_path / "caller"
    caller.mkdir()
    env = {"KIT_CALLER_DIR": str(caller), "AICROWD_OUTPUT_PATH": "outputs", "AICROWD_DATASET_NAME": "h5:my.h5"}
    with pytest.raises(ConfigError) as error:
        read_config(env)
    assert str(caller / "my.h5") in str(error.value)
    (caller / "data").mkdir()
    job = read_config(dict(env, AICROWD_DATASET_NAME="mpi3d_sim_toy", DISENTANGLEMENT_LIB_DATA="data"))
    assert job.output_dir == str(caller / "outputs" / "local_evaluation") and job.data_dir == str(caller / "data")
    assert not (caller / "outputs").exists()
    # run.sh passes the caller's directory: called from elsewhere, a relative file is looked for there.
    result = subprocess.run([os.path.join(ROOT, "run.sh")], cwd=caller, capture_output=True, text=True, timeout=300,
                            env=dict({k: v for k, v in os.environ.items() if not k.startswith("AICROWD_")},
                                     AICROWD_DATASET_NAME="h5:my.h5", AICROWD_OUTPUT_PATH="outputs"))
    assert result.returncode == 2 and str(caller / "my.h5") in result.stderr, result.stderr
    assert not (caller / "outputs").exists()


class _CodesBySize(torch.nn.Module):
    """10 codes, or 12 for batches of ``odd`` images."""

    def __init__(self, odd):
        super().__init__()
        self.odd = odd

    def forward(self, x):
        codes = x.flatten(1)[:, :12] * 1000
        return codes if x.shape[0] in self.odd else codes[:, :10]


@pytest.mark.parametrize("odd", [(64,), tuple(n for n in range(1, 64) if n != 16)])
def test_a_model_whose_code_count_changes_with_the_batch_is_refused_in_one_line(tmp_path, capsys, odd):
    """Caught by the probe (12 codes at batch 64) or mid-run at a size the probe never tried: exit 2, one line, no
    scores.json and no metric results either way."""
    from evaluate.__main__ import main as evaluate_main
    path = str(tmp_path / "model.pt")
    torch.jit.save(torch.jit.script(_CodesBySize(odd)), path)
    out = tmp_path / "eval"
    assert evaluate_main(["--model", path, "--dataset", "mpi3d_sim_toy", "--output", str(out), "--quick",
                          "--metrics", "mig", "sap_score", "--jobs", "1"]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip() and not line.startswith("[")]
    assert len(lines) == 1 and "expected the same number of codes for every batch" in lines[0], lines
    assert not (out / "scores.json").exists()
    assert not out.exists() or list((out / "metrics").glob("*")) == []


@pytest.mark.parametrize("jobs", ["0", "-3"])
def test_evaluate_refuses_a_non_positive_job_count(tmp_path, capsys, jobs):
    from evaluate.__main__ import main as evaluate_main
    assert evaluate_main(["--model", "x.pt", "--dataset", "mpi3d_sim_toy", "--output", str(tmp_path / "e"),
                          "--jobs", jobs]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and f"--jobs {jobs}" in lines[0] and not (tmp_path / "e").exists()


def test_ctrl_c_in_run_sh_is_one_stopped_line_and_exit_130(tmp_path):
    """Ctrl-C at a terminal reaches the whole process group: the pipeline and its running stage."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AICROWD_", "MODEL", "BUDGET", "SEED"))}
    env.update(AICROWD_OUTPUT_PATH=str(tmp_path / "out"), BUDGET="2m", EVALUATE="0", KIT_PRECISION="fp32")
    proc = subprocess.Popen(["./run.sh"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, preexec_fn=_ctrl_c_default)
    export = tmp_path / "out" / "local_evaluation" / "representation" / "pytorch_model.pt"
    start = time.monotonic()
    while not export.exists():
        assert proc.poll() is None and time.monotonic() - start < 180, proc.communicate()
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert err.strip().splitlines()[-1].startswith("stopped: SIGINT received during train")


def test_own_images_of_another_size_are_refused_up_front_and_one_channel_builds_a_one_channel_model(tmp_path):
    import h5py
    from submission.pipeline import ConfigError, read_config
    for shape in ((6, 32, 32, 3), (6, 64, 64, 1)):
        path = tmp_path / f"mine{shape[1]}x{shape[3]}.h5"
        with h5py.File(path, "w") as f:
            f["images"] = np.zeros(shape, np.uint8)
            f.attrs["factor_names"], f.attrs["factor_sizes"] = ["a", "b"], [2, 3]
        env = {"AICROWD_DATASET_NAME": f"h5:{path}", "AICROWD_OUTPUT_PATH": str(tmp_path / "out")}
        if shape[1] == 32:
            with pytest.raises(ConfigError, match=r"32x32 images; expected \(N, 64, 64, C\)"):
                read_config(env)
        else:
            assert read_config(env).channels == 1
        assert sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".h5") == []   # no conversion, no output


def test_a_method_that_shadows_a_tensor_method_is_refused(tmp_path):
    """A crafted archive cannot call a tensor's own impure method by defining a dummy method of the same name."""
    def shadow(text):
        text = text.replace(b"    torch.save(x, path)\n", b"    _s = (x).share_memory_()\n")
        return text + b"  def share_memory_(self: __torch__._Saver) -> NoneType:\n    return None\n"

    with pytest.raises(UnsafeTorchScript, match=r"calls \(?x\)?\.share_memory_"):
        check_torchscript(_edited_saver(tmp_path, "shadow.pt", shadow))
