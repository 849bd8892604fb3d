"""./run.sh end to end on the procedural stand-ins: a short run (train, export, evaluate, the table), the recipe's
pretrain then fine-tune, and SIGTERM."""
import json
import math
import os
import signal
import subprocess
import time

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LABELS = ("FactorVAE", "DCI", "SAP", "MIG", "IRS")


def _env(tmp_path, **overrides):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AICROWD_", "MODEL", "BUDGET", "SEED"))}
    env.update(AICROWD_OUTPUT_PATH=str(tmp_path / "out"), AICROWD_EVALUATION_NAME="e2e",
               PRETRAINED_DIR=str(tmp_path / "pretrained"), EVAL_SETTINGS="quick", KIT_PROGRESS="plain",
               OMP_NUM_THREADS="2")
    env.update(overrides)
    return env


def test_run_sh_trains_exports_evaluates_and_prints_the_table(tmp_path):
    result = subprocess.run(["./run.sh"], cwd=ROOT, env=_env(tmp_path, BUDGET="40s"), capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    job = tmp_path / "out" / "e2e"
    export = job / "representation" / "pytorch_model.pt"
    module = torch.jit.load(str(export), map_location="cpu")
    codes = module(torch.rand(5, 3, 64, 64))
    assert codes.dtype == torch.float32 and codes.shape == (5, 20)      # PVAE starts from 20 dimensions
    scores = json.loads((job / "scores.json").read_text())
    assert {"infom", "infoe", "infoc"} <= set(scores.pop("extras"))       # the extra metrics, never among the five
    assert set(scores) == {"factor_vae_metric", "dci", "sap_score", "mig", "irs"}
    assert all(isinstance(v, float) and math.isfinite(v) and 0.0 <= v <= 1.0 for v in scores.values())
    table = result.stdout.split("leaderboard metrics on mpi3d_sim_realistic", 1)[1]
    for label, key in zip(LABELS, ("factor_vae_metric", "dci", "sap_score", "mig", "irs")):
        assert f"{label:<11} {scores[key]:.4f}" in table
    for metric in scores:
        assert (job / "metrics" / metric / "results" / "aggregate" / "evaluation.json").exists()
    events = [json.loads(line) for line in (job / "progress.jsonl").read_text().splitlines()]
    names = [e["event"] for e in events]
    assert names[0] == "disentanglement_challenge:execution_started"
    assert names[-1] == "disentanglement_challenge:execution_completed"
    progress = [e["payload"]["progress"] for e in events if e["event"].endswith("register_progress")]
    assert progress == sorted(progress) and progress[-1] == 1.0
    # A 40-second budget is a short run: the short-run settings on the recipe, one stage on the dataset, no pretraining.
    assert "short run (budget under 30 minutes): submission/configs/short/pvae.gin" in result.stdout
    assert "=== pretrain" not in result.stdout and "--init_from" not in result.stdout
    assert "=== train: submission.train" in result.stdout and "progress_span = (0.0, 1.0)" in result.stdout
    assert "od/Linear.delay = 0.5" in (job / "train" / "config.gin").read_text()
    assert not (tmp_path / "pretrained").exists() and (job / "report" / "report.html").exists()

    # With the recipe as is and PRETRAIN=on, a job pretrains and keeps the checkpoint; the next job (PRETRAIN's default,
    # auto) reuses it and gives fine-tuning the whole budget.
    recipe = _env(tmp_path, BUDGET="20s", EVALUATE="0", SHORT_RUN_SETTINGS="off", AICROWD_EVALUATION_NAME="e2e_pre",
                  PRETRAIN="on")
    first = subprocess.run(["./run.sh"], cwd=ROOT, env=recipe, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "=== pretrain" in first.stdout and "short run" not in first.stdout
    assert (tmp_path / "pretrained" / "pvae.pt").exists()
    again = subprocess.run(["./run.sh"], cwd=ROOT, env=dict(recipe, AICROWD_EVALUATION_NAME="e2e_again", PRETRAIN="auto"),
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "using pretrained checkpoint" in again.stdout and "=== pretrain" not in again.stdout
    assert (tmp_path / "out" / "e2e_again" / "representation" / "pytorch_model.pt").exists()


@pytest.mark.slow
def test_sigterm_during_fine_tuning_leaves_a_valid_export_and_stops_the_job(tmp_path):
    env = _env(tmp_path, BUDGET="10m", SHORT_RUN_SETTINGS="off")          # the recipe: fine-tuned from pretraining
    (tmp_path / "pretrained").mkdir()
    pre = subprocess.run([os.path.join(ROOT, ".venv", "bin", "python"), "-m", "pretrain", "--gin_file",
                          "submission/configs/pvae.gin", "--output", str(tmp_path / "pre"), "--budget", "15s",
                          "--max_steps", "20", "--no_report"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert pre.returncode == 0, pre.stderr[-2000:]
    os.replace(tmp_path / "pre" / "checkpoint.pt", tmp_path / "pretrained" / "pvae.pt")
    proc = subprocess.Popen(["./run.sh"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    log_file = tmp_path / "out" / "e2e" / "train" / "log.jsonl"
    deadline = time.monotonic() + 300
    while not (log_file.exists() and log_file.stat().st_size > 0) and time.monotonic() < deadline:
        time.sleep(1)
    assert log_file.exists(), "fine-tuning never started"
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 130, output[-3000:]
    assert "SIGTERM received during fine-tune" in output and "=== evaluate" not in output
    module = torch.jit.load(str(tmp_path / "out" / "e2e" / "representation" / "pytorch_model.pt"))
    assert module(torch.rand(2, 3, 64, 64)).shape == (2, 20)
