"""./run.sh's contract for bad input: one clear line, a non-zero exit, and nothing written."""
import os
import subprocess

import pytest

from submission import pipeline

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env(tmp_path, **overrides):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AICROWD_", "MODEL", "BUDGET", "SEED"))}
    env.update(AICROWD_OUTPUT_PATH=str(tmp_path / "out"), AICROWD_EVALUATION_NAME="bad",
               DISENTANGLEMENT_LIB_DATA=str(tmp_path / "data"), PRETRAINED_DIR=str(tmp_path / "pretrained"))
    (tmp_path / "data").mkdir(exist_ok=True)
    env.update(overrides)
    return env


BAD_INPUTS = {
    "unknown dataset": (dict(AICROWD_DATASET_NAME="mpi3d_imaginary"), ["mpi3d_imaginary", "mpi3d_sim_toy", "mpi3d_toy"]),
    "unknown model": (dict(MODEL="resnet"), ["MODEL", "resnet", "pvae", "betatcvae"]),
    "missing data directory": (dict(DISENTANGLEMENT_LIB_DATA="/nonexistent/kit-data"), ["/nonexistent/kit-data"]),
    "missing dataset file": (dict(AICROWD_DATASET_NAME="mpi3d_toy"), ["mpi3d_toy"]),
    "malformed budget": (dict(BUDGET="8 hours"), ["BUDGET", "8 hours"]),
    "malformed seed": (dict(SEED="one"), ["SEED", "one"]),
    "negative seed": (dict(SEED="-1"), ["SEED", "-1", "out of range"]),
    "huge seed": (dict(SEED="99999999999999999999999"), ["SEED", "99999999999999999999999", "out of range"]),
    "unknown precision": (dict(KIT_PRECISION="fp8"), ["KIT_PRECISION", "fp8", "fp32, bf16 or auto"]),
    "unknown short-run setting": (dict(SHORT_RUN_SETTINGS="maybe"), ["SHORT_RUN_SETTINGS", "maybe", "auto", "off"]),
    "unknown pretraining mode": (dict(PRETRAIN="toy", BUDGET="1h"), ["PRETRAIN", "toy", "auto", "on", "off"]),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_run_sh_bad_input_is_one_line_and_writes_nothing(tmp_path, case):
    overrides, expected_words = BAD_INPUTS[case]
    result = subprocess.run(["./run.sh"], cwd=ROOT, env=_env(tmp_path, **overrides),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in expected_words:
        assert word in lines[0]
    assert not (tmp_path / "out").exists() and not (tmp_path / "pretrained").exists()


def test_unwritable_output_path_is_refused(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = subprocess.run(["./run.sh"], cwd=ROOT, env=_env(tmp_path, AICROWD_OUTPUT_PATH=str(blocker / "out")),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "AICROWD_OUTPUT_PATH" in result.stderr
    assert "not writable" in result.stderr and blocker.read_text() == ""


def test_read_only_output_directory_is_refused(tmp_path):
    # root ignores permission bits, so use a directory on a read-only filesystem when not testable by chmod.
    target = "/proc/kit-output" if os.geteuid() == 0 else None
    if target is None:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        target = str(ro / "out")
    with pytest.raises(pipeline.ConfigError, match="not writable"):
        pipeline.check_writable(target, "AICROWD_OUTPUT_PATH")


def test_defaults_locally_and_when_grading(tmp_path):
    env = _env(tmp_path)
    env.pop("DISENTANGLEMENT_LIB_DATA")
    job = pipeline.read_config(env)
    assert (job.model, job.dataset, job.seed, job.grading, job.evaluate) == ("pvae", "mpi3d_sim_realistic", 0, False, True)
    assert job.budget_s == 240
    assert job.export_path == str(tmp_path / "out" / "bad" / "representation" / "pytorch_model.pt")
    graded = pipeline.read_config(_env(tmp_path, AICROWD_IS_GRADING="1", AICROWD_DATASET_NAME="mpi3d_sim_toy"))
    assert (graded.budget_s, graded.evaluate) == (8 * 3600, False)
    assert not (tmp_path / "out").exists()


def test_budget_plan_keeps_a_margin_when_grading(tmp_path):
    job = pipeline.read_config(_env(tmp_path, AICROWD_IS_GRADING="1", AICROWD_DATASET_NAME="mpi3d_sim_toy", PRETRAIN="on"))
    pre, fine = pipeline.plan_budget(job, need_pretrain=True)
    assert pre + fine == 8 * 3600 - 15 * 60 and pre == pytest.approx(0.4 * (pre + fine))
    pre, fine = pipeline.plan_budget(job, need_pretrain=False)
    assert (pre, fine) == (0.0, 8 * 3600 - 15 * 60)
    local = pipeline.read_config(_env(tmp_path, BUDGET="100s", SHORT_RUN_SETTINGS="off", PRETRAIN="on"))
    assert pipeline.plan_budget(local, need_pretrain=True) == (40.0, 60.0)
    default = pipeline.read_config(_env(tmp_path, BUDGET="100s", SHORT_RUN_SETTINGS="off"))  # auto, no checkpoint
    assert not default.uses_pretrained and pipeline.plan_budget(default, need_pretrain=True) == (0.0, 100.0)
    short = pipeline.read_config(_env(tmp_path, BUDGET="100s"))       # a short run trains once, on the dataset
    assert pipeline.plan_budget(short, need_pretrain=True) == (0.0, 100.0)


def test_validating_an_official_file_converts_nothing_and_a_bad_one_is_one_line(tmp_path, monkeypatch):
    """read_config checks the npz (headers, counts) without writing its .npy; the training stage converts it."""
    import numpy as np
    from submission.data import get_dataset
    from npz_files import write_npz
    grid = [[0], [0], [0], [0], [0, 1], [0, 5, 9], [0, 39]]
    sizes = tuple(len(v) for v in grid)
    monkeypatch.setattr("submission.data.npz_datasets.MPI3D_LAYOUTS", {int(np.prod(sizes)): sizes})
    npz = tmp_path / "data" / "mpi3d_real" / "mpi3d_real.npz"
    write_npz(get_dataset("mpi3d_sim_toy"), npz, grid)
    before = sorted(p.name for p in npz.parent.iterdir())
    job = pipeline.read_config(_env(tmp_path, AICROWD_DATASET_NAME="mpi3d_real"))
    assert job.dataset == "mpi3d_real" and sorted(p.name for p in npz.parent.iterdir()) == before
    assert not (tmp_path / "out").exists()
    images, _ = get_dataset("mpi3d_real", data_dir=tmp_path / "data").sample_batch(4, np.random.default_rng(0))
    assert tuple(images.shape) == (4, 3, 64, 64) and (npz.parent / "mpi3d_real.images.npy").is_file()

    bad = tmp_path / "bad" / "mpi3d_real" / "mpi3d_real.npz"
    bad.parent.mkdir(parents=True)
    np.savez(bad, images=np.zeros((5, 64, 64, 3), np.uint8))
    with pytest.raises(pipeline.ConfigError, match=r"mpi3d_real\.npz\[images\]: 5 images; expected one of") as error:
        pipeline.read_config(_env(tmp_path, AICROWD_DATASET_NAME="mpi3d_real", DISENTANGLEMENT_LIB_DATA=str(tmp_path / "bad")))
    assert "\n" not in str(error.value) and sorted(p.name for p in bad.parent.iterdir()) == ["mpi3d_real.npz"]


def test_short_budgets_get_the_models_short_run_settings_and_no_pretraining(tmp_path):
    short = pipeline.read_config(_env(tmp_path))                       # the 4-minute default
    settings = os.path.join(ROOT, "submission", "configs", "short", "pvae.gin")
    assert short.short_run_file == settings and short.gin_files == [short.recipe, settings]
    for overrides in (dict(BUDGET="30m"), dict(SHORT_RUN_SETTINGS="off"), dict(MODEL="betatcvae"),
                      dict(MODEL="beta_vae")):
        job = pipeline.read_config(_env(tmp_path, **overrides))
        assert job.short_run_file is None and job.gin_files == [job.recipe], overrides
        assert os.path.isfile(job.recipe) and os.path.basename(job.recipe) == f"{job.model}.gin"
    # A short run never starts from the pretrained checkpoint, so a broken one stops only the jobs that would load it.
    (tmp_path / "pretrained").mkdir()
    (tmp_path / "pretrained" / "pvae.pt").write_bytes(b"not a checkpoint")
    assert pipeline.read_config(_env(tmp_path)).short_run_file == settings
    with pytest.raises(pipeline.ConfigError, match="pvae.pt"):
        pipeline.read_config(_env(tmp_path, BUDGET="1h"))
    # PRETRAIN=off never reads it; the default (auto) and on fine-tune from a checkpoint that is there.
    assert not pipeline.read_config(_env(tmp_path, BUDGET="1h", PRETRAIN="off")).uses_pretrained


def test_an_unknown_short_run_setting_is_one_line(tmp_path):
    with pytest.raises(pipeline.ConfigError, match="SHORT_RUN_SETTINGS='sometimes' is unknown"):
        pipeline.read_config(_env(tmp_path, SHORT_RUN_SETTINGS="sometimes"))


def test_the_short_run_settings_parse_on_the_recipe_and_defer_the_dip_term():
    import gin
    from submission.objectives.pvae import PVAEObjective
    from submission.schedules import Clock, value_at
    from submission.train import parse_gin
    recipe = os.path.join(ROOT, "submission", "configs", "pvae.gin")
    try:
        parse_gin([recipe], [])
        plain = PVAEObjective()
        assert gin.query_parameter("training.learning_rate") == 5e-4
        assert gin.query_parameter("gate_rate/Linear.end") == 30.0
        parse_gin([recipe, os.path.join(ROOT, "submission", "configs", "short", "pvae.gin")], [])
        short = PVAEObjective()
        assert gin.query_parameter("training.learning_rate") == 1e-3
        assert gin.query_parameter("model.options")["init_log_alpha"] == 6.0
        assert gin.query_parameter("gate_rate/Linear.end") == 10.0
    finally:
        gin.clear_config()
    lambdas = lambda objective, progress: (value_at(objective.lambda_od, Clock(0, progress)),
                                           value_at(objective.lambda_d, Clock(0, progress)))
    assert lambdas(plain, 0.25) == lambdas(plain, 0.9) == (20.0, 2.0)
    assert lambdas(short, 0.25) == lambdas(short, 0.5) == (0.0, 0.0)
    assert lambdas(short, 0.6) == pytest.approx((10.0, 1.0)) and lambdas(short, 0.7) == pytest.approx((20.0, 2.0))


@pytest.mark.parametrize("mode", ["auto", "on", "off"])
def test_pretrain_mode_decides_the_stages(tmp_path, monkeypatch, capsys, mode):
    """PRETRAIN=auto (the default) without a checkpoint and PRETRAIN=off train once on the dataset from the start;
    PRETRAIN=on pretrains first and fine-tunes from what it made; auto with a checkpoint fine-tunes from it."""
    calls = []

    def fake_stage(name, args, ok_codes=(0,)):
        calls.append((name, args))
        out = args[args.index("--output") + 1]
        os.makedirs(out, exist_ok=True)
        open(os.path.join(out, "checkpoint.pt"), "wb").close()
        if "--export" in args:
            export = args[args.index("--export") + 1]
            os.makedirs(os.path.dirname(export), exist_ok=True)
            open(export, "wb").close()
        return 0

    monkeypatch.setattr(pipeline, "_run_stage", fake_stage)
    job = pipeline.read_config(_env(tmp_path, BUDGET="1h", EVALUATE="0", PRETRAIN=mode))
    pipeline.run(job, events=pipeline.aicrowd_helpers.Events(job.output_dir, False))
    names = [name for name, _ in calls]
    if mode == "on":
        assert names == ["pretrain", "fine-tune"] and "--init_from" in calls[1][1]
        assert (tmp_path / "pretrained" / "pvae.pt").exists()
    else:
        assert names == ["train"] and "--init_from" not in calls[0][1]
        assert "from the start" in capsys.readouterr().out and not (tmp_path / "pretrained").exists()
    if mode == "auto":                                  # a checkpoint that is there is used (its loading: elsewhere)
        (tmp_path / "pretrained").mkdir()
        (tmp_path / "pretrained" / "pvae.pt").write_bytes(b"")
        monkeypatch.setattr(pipeline, "_check_pretrained", lambda path: None)
        calls.clear()
        job = pipeline.read_config(_env(tmp_path, BUDGET="1h", EVALUATE="0", AICROWD_EVALUATION_NAME="again"))
        pipeline.run(job, events=pipeline.aicrowd_helpers.Events(job.output_dir, False))
        assert [name for name, _ in calls] == ["fine-tune"] and "--init_from" in calls[0][1]
        assert "using pretrained checkpoint" in capsys.readouterr().out
