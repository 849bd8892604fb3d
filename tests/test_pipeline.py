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
    job = pipeline.read_config(_env(tmp_path, AICROWD_IS_GRADING="1", AICROWD_DATASET_NAME="mpi3d_sim_toy"))
    pre, fine = pipeline.plan_budget(job, need_pretrain=True)
    assert pre + fine == 8 * 3600 - 15 * 60 and pre == pytest.approx(0.4 * (pre + fine))
    pre, fine = pipeline.plan_budget(job, need_pretrain=False)
    assert (pre, fine) == (0.0, 8 * 3600 - 15 * 60)
    local = pipeline.read_config(_env(tmp_path, BUDGET="100s"))
    assert pipeline.plan_budget(local, need_pretrain=True) == (40.0, 60.0)


def test_validating_an_official_file_converts_nothing_and_a_bad_one_is_one_line(tmp_path, monkeypatch):
    """read_config checks the npz (headers, counts) without writing its .npy; the training stage converts it."""
    import numpy as np
    from submission.data import get_dataset
    from submission.data.npz_export import write_npz
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
