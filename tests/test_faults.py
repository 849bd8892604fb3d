"""Injected faults lose nothing: untrusted files never run code, a damaged checkpoint falls back to the previous one, a
full disk stops cleanly with the old files whole, a kill resumes from the last checkpoint, two runs never share an
output directory, repeated NaN keeps the last good export. ``bench/faults.py`` is the long soak of the same faults."""
import errno
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from submission import checkpoints, files
from submission.export import verify_export, verify_export_of_run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--gin_file", "submission/configs/beta_vae.gin", "--gin_binding", "model.architecture = 'mlp'",
        "--gin_binding", "model.latent_dim = 4", "--gin_binding", "training.batch_size = 8",
        "--gin_binding", "training.precision = 'fp32'", "--dataset", "mpi3d_sim_toy", "--no_report"]


class RunsCode:
    """Unpickling this calls os.system: what an attacker's checkpoint would do under weights_only=False."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _malicious_checkpoint(path, marker):
    torch.save({"format": checkpoints.CHECKPOINT_FORMAT, "step": 1, "model_config": {"kind": "vae"},
                "model": {}, "payload": RunsCode(marker)}, path)
    return str(path)


def _one_error_line(err, path):
    lines = [line for line in err.strip().splitlines() if "error" in line.lower()]
    assert len(lines) == 1, err
    assert str(path) in lines[0], lines[0]
    return lines[0]


def _train(argv, capsys):
    from submission import train
    code = train.main(argv)
    return code, capsys.readouterr().err


def test_untrusted_checkpoints_are_refused_by_every_entry_point(tmp_path, capsys, monkeypatch):
    marker = tmp_path / "code-ran"
    evil = _malicious_checkpoint(tmp_path / "evil.pt", marker)

    from evaluate.__main__ import main as evaluate_main
    assert evaluate_main(["--model", evil, "--dataset", "mpi3d_sim_toy", "--output", str(tmp_path / "eval")]) == 2
    assert "untrusted" in _one_error_line(capsys.readouterr().err, evil)

    from submission.visualize.__main__ import main as visualize_main
    os.makedirs(tmp_path / "run")
    assert visualize_main(["--run", str(tmp_path / "run"), "--model", evil, "--dataset", "mpi3d_sim_toy"]) == 2
    _one_error_line(capsys.readouterr().err, evil)

    code, err = _train([*TINY, "--output", str(tmp_path / "init"), "--budget", "60s", "--init_from", evil], capsys)
    assert code == 2
    _one_error_line(err, evil)

    resumed = tmp_path / "resume"
    os.makedirs(resumed)
    _malicious_checkpoint(resumed / "checkpoint.pt", marker)
    code, err = _train([*TINY, "--output", str(resumed), "--budget", "60s"], capsys)
    assert code == 2
    _one_error_line(err, resumed / "checkpoint.pt")

    from submission.pipeline import ConfigError, read_config
    pretrained = tmp_path / "pretrained"
    os.makedirs(pretrained)
    _malicious_checkpoint(pretrained / "pvae.pt", marker)
    with pytest.raises(ConfigError, match="untrusted") as refused:
        read_config({"PRETRAINED_DIR": str(pretrained), "AICROWD_OUTPUT_PATH": str(tmp_path / "job"), "BUDGET": "1h"})
    assert str(pretrained / "pvae.pt") in str(refused.value) and not (tmp_path / "job").exists()

    assert not marker.exists(), "a checkpoint's pickle ran code"
    with pytest.raises(Exception):              # the file really is hostile: the unsafe loader would have run it
        torch.load(evil, weights_only=True)


def test_no_torch_load_outside_the_one_loader():
    calls = []
    for top in ("submission", "evaluate", "pretrain", "aicrowd_helpers", "bench", "study"):
        for directory, _, files in os.walk(os.path.join(ROOT, top)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(directory, name)
                    with open(path) as f:
                        calls += [(path, line) for line in f if "torch.load(" in line]
    assert [os.path.relpath(p, ROOT) for p, _ in calls] == [os.path.join("submission", "checkpoints.py")], calls
    assert "weights_only=True" in calls[0][1]


def _train_steps(tmp_path, capsys, steps, **kwargs):
    code, err = _train([*TINY, "--output", str(tmp_path / "train"), "--budget", "120s", "--max_steps", str(steps),
                        "--export", str(tmp_path / "representation" / "pytorch_model.pt")], capsys)
    assert code == 0, err
    return err


def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, capsys):
    _train_steps(tmp_path, capsys, 4)
    _train_steps(tmp_path, capsys, 8)           # resumes at 4, ends at 8: checkpoint.pt = 8, checkpoint.prev.pt = 4
    run = tmp_path / "train"
    assert checkpoints.load_checkpoint(str(run / "checkpoint.prev.pt"))["step"] >= 4
    with open(run / "checkpoint.pt", "r+b") as f:  # truncated mid-file, as a disk error would leave it
        f.truncate(os.path.getsize(run / "checkpoint.pt") // 2)
    err = _train_steps(tmp_path, capsys, 10)
    notes = [line for line in err.splitlines() if "resuming from the previous one" in line]
    assert len(notes) == 1 and "checkpoint.prev.pt" in notes[0], err
    assert checkpoints.load_checkpoint(str(run / "checkpoint.pt"))["step"] == 10

    for name in ("checkpoint.pt", "checkpoint.prev.pt"):   # both damaged: an error, never a silent fresh start
        (run / name).write_bytes(b"garbage")
    code, err = _train([*TINY, "--output", str(run), "--budget", "60s", "--max_steps", "12"], capsys)
    assert code == 2 and "checkpoint" in _one_error_line(err, run / "checkpoint.pt")


def _disk_full_after(monkeypatch, calls_ok, matches=lambda path: True):
    real = files.atomic_write
    count = {"n": 0}

    def write(path, *args, **kwargs):
        if matches(path):
            count["n"] += 1
            if count["n"] > calls_ok:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(files, "atomic_write", write)


@pytest.mark.parametrize("target", ["checkpoint.pt", "pytorch_model.pt"])
def test_a_full_disk_stops_cleanly_and_keeps_the_previous_files(tmp_path, capsys, monkeypatch, target):
    _train_steps(tmp_path, capsys, 4)
    run, export = tmp_path / "train", tmp_path / "representation" / "pytorch_model.pt"
    failing = run / "checkpoint.pt" if target == "checkpoint.pt" else export
    before = failing.read_bytes()
    _disk_full_after(monkeypatch, 0, lambda path: str(path).endswith(target))
    code, err = _train([*TINY, "--output", str(run), "--budget", "120s", "--max_steps", "8",
                        "--export", str(export)], capsys)
    assert code == 1
    assert "No space left on device" in _one_error_line(err, target)
    assert failing.read_bytes() == before                  # the file the disk refused: the previous one, byte for byte
    assert not [n for n in os.listdir(run) + os.listdir(export.parent) if ".tmp-" in n]   # no temporary left over
    monkeypatch.undo()
    verify_export(str(export), checkpoints.load_model_file(str(run / "checkpoint.pt"))[0])


def test_a_full_disk_while_writing_the_evaluation_keeps_the_old_scores(tmp_path, capsys, monkeypatch):
    from evaluate.__main__ import main as evaluate_main
    from submission.models import build_model
    from submission.export import export_representation
    model = build_model({"kind": "vae", "architecture": "mlp", "latent_dim": 3, "channels": 3})
    export = export_representation(model, str(tmp_path / "pytorch_model.pt"))
    out = tmp_path / "eval"
    os.makedirs(out)
    (out / "scores.json").write_text('{"mig": 0.5}\n')
    _disk_full_after(monkeypatch, 0, lambda path: str(path).endswith("scores.json"))
    code = evaluate_main(["--model", export, "--dataset", "mpi3d_sim_toy", "--output", str(out), "--metrics", "mig",
                          "--quick", "--gin_binding", "mig.num_train = 300"])
    assert code == 1
    assert "No space left on device" in _one_error_line(capsys.readouterr().err, "scores.json")
    assert (out / "scores.json").read_text() == '{"mig": 0.5}\n'


def _python():
    return [sys.executable, "-m", "submission.train"]


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT, KIT_PROGRESS="plain")


def test_a_second_run_on_the_same_directory_is_refused_and_a_killed_ones_lock_is_taken_over(tmp_path, capsys):
    """Also: the killed run logged steps past its last checkpoint; after the resume each step is in log.jsonl once."""
    from submission.training_log import window_records
    run = tmp_path / "train"
    every_step = ["--gin_binding", "training.log_every_s = 0.0"]
    first = subprocess.Popen([*_python(), *TINY, "--output", str(run), "--budget", "300s", "--max_steps", "100000",
                              "--gin_binding", "training.checkpoint_every_s = 0.5", *every_step], cwd=ROOT,
                             env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (run / "checkpoint.pt").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert (run / files.LOCK_NAME).exists()
        code, err = _train([*TINY, "--output", str(run), "--budget", "30s", "--max_steps", "5"], capsys)
        assert code == 2
        assert f"PID {first.pid}" in _one_error_line(err, run)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert (run / files.LOCK_NAME).exists()                      # left behind by the kill
    done = checkpoints.load_checkpoint(str(run / "checkpoint.pt"))["step"]
    with open(run / "log.jsonl", "a") as log:                   # what a kill between two checkpoints leaves, for sure
        log.write('{"step": %d, "killed_run": true}\n{"step": %d, "killed_run": true}\n{"step": 99' % (done + 1, done + 2))
    code, err = _train([*TINY, "--output", str(run), "--budget", "60s", "--max_steps", str(done + 3), *every_step],
                       capsys)
    assert code == 0, err
    assert checkpoints.load_checkpoint(str(run / "checkpoint.pt"))["step"] == done + 3
    assert not (run / files.LOCK_NAME).exists()
    windows = window_records(str(run / "log.jsonl"))[0]
    steps = [r["step"] for r in windows]
    assert steps == sorted(set(steps)) and steps[-1] == done + 3, (done, steps[-8:])
    assert not [r for r in windows if r.get("killed_run")]


def test_sigkill_at_random_moments_resumes_from_the_last_checkpoint(tmp_path):
    """Three kills (bench/faults.py does twenty and more): each rerun resumes; the export always loads and verifies."""
    import random
    run, export = tmp_path / "train", tmp_path / "representation" / "pytorch_model.pt"
    argv = [*_python(), *TINY, "--output", str(run), "--budget", "300s", "--max_steps", "400", "--export",
            str(export), "--gin_binding", "training.checkpoint_every_s = 0.3"]
    rng = random.Random(0)
    for _ in range(3):
        proc = subprocess.Popen(argv, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while not (run / "checkpoint.pt").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(rng.uniform(0.5, 2.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        checkpoint, _, note = checkpoints.load_latest_checkpoint(str(run))
        assert checkpoint is not None and note is None
        verify_export_of_run(str(export), str(run))        # the latest checkpoint's export, or the one before
    finished = subprocess.run(argv, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert "resuming from" in finished.stderr
    assert checkpoints.load_checkpoint(str(run / "checkpoint.pt"))["step"] == 400


def nan_from(after_calls, method="beta_vae"):
    """``method``'s objective, whose KL turns NaN from call ``after_calls + 1`` on."""
    from submission.objectives import build_objective
    from submission.objectives.base import Objective

    class NaNFrom(Objective):
        name = method

        def __init__(self):
            super().__init__()
            self.inner, self.calls = build_objective(method), 0

        def forward(self, model, x, factors, step):
            self.calls += 1
            terms = self.inner(model, x, factors, step)
            if self.calls > after_calls:
                terms["kl"] = terms["kl"] * float("nan")
            return terms

    return NaNFrom()


def test_repeated_nan_keeps_the_last_good_export(tmp_path):
    from submission.hardware import seed_everything
    from submission.models import make_model
    from submission.trainer import Trainer
    from submission.data import get_dataset

    export = tmp_path / "representation" / "pytorch_model.pt"
    rng = seed_everything(0)
    model = make_model(kind="vae", architecture="mlp", latent_dim=4)
    trainer = Trainer(model, nan_from(after_calls=12), get_dataset("mpi3d_sim_toy"), str(tmp_path / "train"), rng=rng,
                      max_steps=100, batch_size=8, precision="fp32", snapshot_every=5, max_rollbacks=3,
                      checkpoint_every_s=1e9, log_every_s=1e9, export_path=str(export))
    summary = trainer.run()
    assert summary["stopped"] == "diverged" and summary["rollbacks"] == 4       # 3 rollbacks, then it stops
    assert summary["step"] == 10                                                 # the last snapshot before the NaNs
    saved = checkpoints.load_checkpoint(str(tmp_path / "train" / "checkpoint.pt"))
    assert saved["step"] == 10 and all(torch.isfinite(v).all() for v in saved["model"].values())
    verify_export(str(export), checkpoints.model_from_checkpoint(saved, "ckpt"))


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["pretrain", "fine-tune", "evaluate"])
def test_sigterm_in_each_stage_of_run_sh_stops_with_a_line_and_a_rerun_finishes(tmp_path, stage):
    """The export is written inside the fine-tune stage (before its first step, with every checkpoint and at its end),
    so SIGTERM there also covers the export; bench/faults.py kills at random moments, exports included."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AICROWD_", "MODEL", "BUDGET", "SEED"))}
    env.update(AICROWD_OUTPUT_PATH=str(tmp_path / "out"), AICROWD_EVALUATION_NAME="job", BUDGET="40s",
               SHORT_RUN_SETTINGS="off", PRETRAINED_DIR=str(tmp_path / "pretrained"), EVAL_SETTINGS="quick",
               KIT_PROGRESS="plain", PRETRAIN="on",
               OMP_NUM_THREADS="2")
    proc = subprocess.Popen(["./run.sh"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    output = []
    for line in proc.stdout:
        output.append(line)
        if line.startswith(f"=== {stage}:"):
            time.sleep(5.0)
            proc.send_signal(signal.SIGTERM)
            break
    output.append(proc.communicate(timeout=600)[0])
    text = "".join(output)
    assert proc.returncode == 130, text[-3000:]
    assert f"SIGTERM received during {stage}" in text and "rerun ./run.sh to continue" in text
    again = subprocess.run(["./run.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (tmp_path / "out" / "job" / "scores.json").exists()
    verify_export(str(tmp_path / "out" / "job" / "representation" / "pytorch_model.pt"),
                  checkpoints.load_model_file(str(tmp_path / "out" / "job" / "train"))[0])


def test_an_export_is_checked_against_the_last_two_checkpoints(tmp_path, capsys):
    from submission.export import ExportError, export_representation
    from submission.models import build_model
    run, export = tmp_path / "train", tmp_path / "representation" / "pytorch_model.pt"
    _train_steps(tmp_path, capsys, 4)
    four = tmp_path / "four.pt"
    four.write_bytes(export.read_bytes())
    _train_steps(tmp_path, capsys, 8)
    assert verify_export_of_run(str(export), str(run)) == 8
    assert verify_export_of_run(str(four), str(run)) == 4          # one checkpoint behind: still an export of the run
    stranger = export_representation(build_model(checkpoints.load_checkpoint(str(run / "checkpoint.pt"))["model_config"]),
                                      str(tmp_path / "stranger.pt"))
    with pytest.raises(ExportError, match="matches neither"):
        verify_export_of_run(stranger, str(run))
