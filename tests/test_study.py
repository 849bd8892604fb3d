"""python -m study: the plan, bad input, skipping done trials, the lock, status and the table (fast), and real studies
on an embedded Ray (slow: each trial's quick evaluation alone takes about a minute on a 2-core machine)."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from study import plan, runner, state, table
from study.__main__ import main
from study.trial import TrialSpec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--steps", "20", "--pretrain_steps", "10", "--quick_eval", "--dataset", "mpi3d_sim_toy"]


def _dirs(tmp_path):
    return ["--output", str(tmp_path / "studies"), "--scratch", str(tmp_path / "scratch")]


def _record(spec, scores, **extra):
    from study.trial import standins_of
    return {"format": 1, "trial_id": spec.trial_id, **spec.key(), "scores": scores, "steps_done": spec.steps,
            "eval_settings": "quick", "captured_factors": 2, "active_dims": 5, "standins": standins_of(spec), **extra}


def _finish(paths, spec, scores=None):
    from submission.files import atomic_write_json
    scores = scores or {k: 0.5 for k in table.LEADERBOARD_KEYS}
    atomic_write_json(_record(spec, scores), paths.run_file(spec))


# --- the plan -----------------------------------------------------------------------------------------------------------
def test_trial_id_is_readable_and_changes_with_what_defines_the_trial():
    spec = TrialSpec("pvae", 3, 20)
    assert spec.trial_id.startswith("pvae-s3-") and spec.trial_id == TrialSpec("pvae", 3, 20).trial_id
    others = [TrialSpec("pvae", 3, 21), TrialSpec("pvae", 3, 20, ("training.batch_size = 32",)),
              TrialSpec("pvae", 3, 20, quick_eval=True), TrialSpec("pvae", 3, 20, pretrain_steps=0)]
    assert len({spec.trial_id, *(o.trial_id for o in others)}) == 5


def test_grid_values_split_at_top_level_commas_only():
    assert plan.split_top_level("1, @Linear(a=1, b=2), 'x,y', [3, 4]") == ["1", "@Linear(a=1, b=2)", "'x,y'", "[3, 4]"]
    assert plan.parse_grid_axis("BetaTCVAE.beta=[1,2]") == ["BetaTCVAE.beta = 1", "BetaTCVAE.beta = 2"]
    points = plan.grid_points(["a.b=[1,2,3]", "c.d=['x','y']"])
    assert len(points) == 6 and ("a.b = 3", "c.d = 'y'") in points
    assert plan.grid_points([]) == [()]
    for bad in ("a.b=1", "a.b", "=[1]", "a.b=[]"):
        with pytest.raises(plan.StudyError):
            plan.parse_grid_axis(bad)


def test_plan_is_recipes_times_grid_times_seeds():
    specs = plan.plan_trials(["vae", "beta_vae"], [0, 1, 1], ["training.batch_size=[32,64]"], 20)
    assert len(specs) == 2 * 2 * 2 and len({s.trial_id for s in specs}) == 8
    assert {s.bindings for s in specs} == {("training.batch_size = 32",), ("training.batch_size = 64",)}


@pytest.mark.parametrize("args, says", [
    (["--recipes", "nope", "--seeds", "0", "--steps", "5"], "unknown recipe"),
    (["--recipes", "vae", "--seeds", "--steps", "5"], "--seeds is empty"),
    (["--recipes", "vae", "--seeds", "0", "--steps", "0"], "--steps 0"),
    (["--recipes", "vae", "--seeds", "0", "--steps", "-3"], "--steps -3"),
    (["--recipes", "vae", "--seeds", "0", "--steps", "5", "--grid", "NoSuch.beta=[1,2]"], "NoSuch"),
    (["--recipes", "vae", "--seeds", "0", "--steps", "5", "--grid", "training.nosuch=[1]"], "nosuch"),
    (["--recipes", "vae", "--seeds", "0", "--steps", "5", "--dataset", "nope"], "unknown dataset"),
    (["--recipes", "vae", "--seeds", "0", "--steps", "5", "--budget", "3x"], "--budget"),
    (["--recipes", "vae", "--seeds", "-1", "--steps", "5"], "--seeds -1: expected seeds from 0"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, monkeypatch, args, says):
    monkeypatch.setattr(runner, "start_ray", lambda *a, **k: pytest.fail("Ray started on bad input"))
    assert main(["run", "--name", "bad", *args, *_dirs(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and says in err, err
    assert not os.listdir(tmp_path)


def test_unreachable_address_is_named_in_one_line_within_30_s(tmp_path, capsys):
    t0 = time.monotonic()
    assert main(["run", "--name", "far", "--recipes", "vae", "--seeds", "0", "--steps", "5",
                 "--address", "127.0.0.1:1", *_dirs(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "127.0.0.1:1" in err and time.monotonic() - t0 < 30
    assert not (tmp_path / "studies").exists()
    assert not (tmp_path / "scratch" / "studies" / "far").exists()        # no run.lock (nor its directory) left


# --- skipping, the lock, status ---------------------------------------------------------------------------------------
def test_done_trials_are_skipped_before_ray_starts(tmp_path, monkeypatch):
    paths = state.study_paths("s", str(tmp_path / "studies"), str(tmp_path / "scratch"))
    specs = plan.plan_trials(["vae"], [0, 1], [], 20)
    for spec in specs:
        _finish(paths, spec)
    monkeypatch.setattr(runner, "start_ray", lambda *a, **k: pytest.fail("Ray started with nothing to run"))
    assert runner.run_study(paths, specs) == {"done": 0, "failed": 0, "skipped": 2}
    assert [s.trial_id for s in state.load_manifest(paths)] == [s.trial_id for s in specs]


def test_a_run_made_with_another_version_of_its_recipe_is_refused_not_skipped(tmp_path, monkeypatch, capsys):
    from study.trial import recipe_sha
    from submission.files import atomic_write_json
    paths = state.study_paths("s", str(tmp_path / "studies"), str(tmp_path / "scratch"))
    current, legacy, changed = plan.plan_trials(["vae"], [0, 1, 2], [], 20)
    atomic_write_json(_record(current, {}, recipe_sha=recipe_sha("vae")), paths.run_file(current))
    atomic_write_json(_record(legacy, {}), paths.run_file(legacy))          # before fingerprints: taken as it is
    atomic_write_json(_record(changed, {}, recipe_sha="0123456789ab"), paths.run_file(changed))
    monkeypatch.setattr(runner, "start_ray", lambda *a, **k: pytest.fail("Ray started for a refused study"))
    with pytest.raises(plan.StudyError, match=r"another version of .*vae\.gin \(sha 0123456789ab, now [0-9a-f]{12}\)"):
        runner.run_study(paths, [current, legacy, changed])
    assert runner.run_study(paths, [current, legacy]) == {"done": 0, "failed": 0, "skipped": 2}


def test_a_changed_recipe_file_gets_fresh_scratch_directories(tmp_path, monkeypatch):
    """Scratch (checkpoints, finished stages, the shared pretraining) is keyed by the recipe file's bytes as well: an
    edited recipe never resumes from, or reuses the results of, what its earlier version left."""
    from study import trial
    recipe = tmp_path / "vae.gin"
    recipe.write_text(open(trial.recipe_file("vae")).read())
    monkeypatch.setattr(trial, "recipe_file", lambda name: str(recipe))
    spec = TrialSpec("vae", 0, 20)
    before = (spec.trial_id, spec.scratch_id, spec.pretrain_key)
    recipe.write_text(recipe.read_text() + "\ntraining.learning_rate = 1e-3\n")
    after = (spec.trial_id, spec.scratch_id, spec.pretrain_key)
    assert after[0] == before[0]                       # the run JSON's name stays; check_recipe guards it
    assert after[1] != before[1] and after[2] != before[2]
    assert after[1].startswith(spec.trial_id + "-")


def test_only_missing_trials_reach_ray(tmp_path, monkeypatch):
    paths = state.study_paths("s", str(tmp_path / "studies"), str(tmp_path / "scratch"))
    specs = plan.plan_trials(["vae"], [0, 1, 2], [], 20)
    _finish(paths, specs[1])
    seen = {}
    monkeypatch.setattr(runner, "start_ray", lambda *a, **k: None)
    monkeypatch.setattr(runner, "check_resources", lambda *a: None)
    monkeypatch.setattr(runner, "_run_trials", lambda paths, todo, *a: seen.setdefault("todo", todo))
    import ray
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    assert runner.run_study(paths, specs)["skipped"] == 1
    assert seen["todo"] == [specs[0], specs[2]]


def test_a_second_run_of_the_same_study_is_refused_and_a_dead_ones_lock_is_free(tmp_path, capsys):
    paths = state.study_paths("s", str(tmp_path / "studies"), str(tmp_path / "scratch"))
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from study.state import run_lock, study_paths; "
                               f"lock = run_lock(study_paths('s', {str(tmp_path / 'studies')!r}, "
                               f"{str(tmp_path / 'scratch')!r})); lock.__enter__(); print('held', flush=True); "
                               "time.sleep(60)"],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held" and state.run_alive(paths)
        assert main(["run", "--name", "s", "--recipes", "vae", "--seeds", "0", "--steps", "5", *_dirs(tmp_path)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "in use by another run of study 's'" in err and str(holder.pid) in err
    finally:
        holder.kill()                                    # a crash: no cleanup, yet the kernel drops the flock
        holder.wait()
    assert not state.run_alive(paths)
    with state.run_lock(paths):
        assert state.run_alive(paths)
    assert not os.path.exists(paths.lock_file)           # a run leaves no lock file behind


def test_status_says_done_running_failed_pending(tmp_path, capsys):
    paths = state.study_paths("s", str(tmp_path / "studies"), str(tmp_path / "scratch"))
    done, running, failed, pending = plan.plan_trials(["vae"], [0, 1, 2, 3], [], 20)
    state.add_to_manifest(paths, [done, running, failed, pending])
    _finish(paths, done)
    state.mark_running(paths, running.trial_id, True)
    state.mark_running(paths, pending.trial_id, True)   # a marker is only believed while the run is alive...
    state.record_failure(paths, failed.trial_id, "Traceback...\nfine-tune failed with exit code 1: KeyError: 'nope'")
    with state.run_lock(paths):
        state.mark_running(paths, pending.trial_id, False)
        assert main(["status", "--name", "s", *_dirs(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[:4]] == ["done", "running", "failed", "pending"]
    assert lines[2].endswith("fine-tune failed with exit code 1: KeyError: 'nope'")
    assert lines[4] == "1 done, 1 running, 1 failed, 1 pending of 4"
    assert state.trial_state(paths, running, run_alive=False) == "pending"   # ...a dead run's markers mean nothing


# --- the table --------------------------------------------------------------------------------------------------------
def test_mean_and_sample_std():
    assert table.mean_std([]) == (None, None) and table.mean_std([2.0]) == (2.0, None)
    mean, std = table.mean_std([1.0, 2.0, 3.0])
    assert mean == 2.0 and std == pytest.approx(1.0)
    assert table.format_cell([0.5], "mig") == "0.500" and table.format_cell([1.0, 3.0], "dci") == "2.000 ± 1.414"


def test_a_study_made_on_stand_in_version_1_refuses_version_2_runs_and_its_table_says_so(tmp_path, monkeypatch):
    """Runs from before stand-in versions were recorded were made on version 1 (a planar arm): a study holding them
    gets no run on version 2, in one line and before anything is written; its table names the version it was made on."""
    from study.trial import standins_of
    from submission.files import atomic_write_json
    paths = state.study_paths("s", str(tmp_path / "studies"), str(tmp_path / "scratch"))
    old, new = plan.plan_trials(["vae"], [0, 1], [], 20, pretrain_steps=5000)
    assert standins_of(new) == {"mpi3d_sim_realistic": 2, "mpi3d_sim_toy": 2}
    record = _record(old, {k: 0.5 for k in table.LEADERBOARD_KEYS})
    del record["standins"]                                               # as every run made before versions
    atomic_write_json(record, paths.run_file(old))
    state.add_to_manifest(paths, [old])
    manifest = open(paths.manifest).read()
    monkeypatch.setattr(runner, "start_ray", lambda *a, **k: pytest.fail("Ray started for a refused study"))
    with pytest.raises(plan.StudyError, match=r"^study 's' holds runs made on stand-in version 1 of mpi3d_sim_\w+ "
                                              r"\(e\.g\. .*\), which is now version 2: .*start a new --name$"):
        runner.run_study(paths, [old, new])
    assert open(paths.manifest).read() == manifest and not os.path.exists(paths.run_file(new))
    text = table.write_table(paths)
    assert text.splitlines()[0].startswith("Made on stand-in v1 (mpi3d_sim_realistic, mpi3d_sim_toy). The stand-ins "
                                           "are now stand-in v2 (mpi3d_sim_realistic, mpi3d_sim_toy)")
    # A study made on version 2 says so, and takes more version-2 runs.
    fresh = state.study_paths("t", str(tmp_path / "studies"), str(tmp_path / "scratch"))
    _finish(fresh, old)
    assert table.write_table(fresh).splitlines()[0] == "Made on stand-in v2 (mpi3d_sim_realistic, mpi3d_sim_toy)."
    state.check_standins(fresh, [new])
    # Rows of mixed versions (possible only in studies from before the refusal) never share a row.
    mixed = [record, _record(new, {k: 0.5 for k in table.LEADERBOARD_KEYS})]
    labels = sorted(setting for _, setting, _ in table.group_rows(mixed))
    assert labels == ["stand-in v1 (mpi3d_sim_realistic, mpi3d_sim_toy)",
                      "stand-in v2 (mpi3d_sim_realistic, mpi3d_sim_toy)"]


def test_table_has_a_row_per_recipe_and_setting_with_n_and_a_figure(tmp_path):
    paths = state.study_paths("s", str(tmp_path / "studies"), str(tmp_path / "scratch"))
    specs = plan.plan_trials(["vae", "beta_vae"], [0, 1], ["training.batch_size=[32,64]"], 20)
    state.add_to_manifest(paths, specs)
    for i, spec in enumerate(specs[:-1]):                     # the last seed of the last row has not finished
        _finish(paths, spec, {k: float(i) for k in table.LEADERBOARD_KEYS})
    state.record_failure(paths, specs[-1].trial_id, "boom")   # failures never enter the table
    text = table.write_table(paths)
    rows = [line for line in text.splitlines() if line.startswith("| vae") or line.startswith("| beta_vae")]
    assert len(rows) == 4
    assert rows[0].startswith("| vae | training.batch_size = 32 | 2 | 0.500 ± 0.707 |")
    assert rows[3].startswith("| beta_vae | training.batch_size = 64 | 1 | 6.000 | ")
    assert (tmp_path / "studies" / "s" / "table.md").read_text().strip() == text
    assert (tmp_path / "studies" / "s" / "table.png").read_bytes()[:4] == b"\x89PNG"


def test_per_factor_table_has_a_row_per_run_in_the_datasets_factor_order(tmp_path):
    paths = state.study_paths("s", str(tmp_path / "studies"), str(tmp_path / "scratch"))
    specs = plan.plan_trials(["vae", "pvae"], [0, 1], ["training.batch_size=[64]"], 20)
    state.add_to_manifest(paths, specs)
    from submission.files import atomic_write_json
    names = ["shape", "angle", "colour"]                            # deliberately not alphabetical
    for spec in specs:
        nmi = {"shape": 0.05 + spec.seed, "angle": 0.2, "colour": 0.19}  # the threshold is inclusive: 0.2 captures
        gates = {"pvae_active_dims": 7.0 + spec.seed} if spec.recipe == "pvae" else {}
        atomic_write_json(_record(spec, {k: 0.5 for k in table.LEADERBOARD_KEYS}, capture_nmi=nmi, factor_names=names,
                                  captured_factors=1 + spec.seed, **gates), paths.run_file(spec))
    text = table.write_table(paths)
    assert "| run | shape | angle | colour | captured | active dims | open gates |" in text
    assert "| vae (A), seed 0 | 0.05 | **0.20** | 0.19 | 1 of 3 | 5 | – |" in text
    assert "| pvae (A), seed 1 | **1.05** | **0.20** | 0.19 | 2 of 3 | 5 | 8 |" in text
    assert "(A) training.batch_size = 64." in text
    # Older records have no factor_names (their capture_nmi went through a sorted JSON writer): alphabetical then.
    assert table.factor_order([{"capture_nmi": {"b": 0.1, "a": 0.3}, "dataset": "h5:/nowhere.h5"}]) == ["a", "b"]
    assert table.factor_order([{"capture_nmi": {"camera_height": 0.1, "object_size": 0.3},   # the stand-in's order
                                "dataset": "mpi3d_sim_realistic"}]) == ["object_size", "camera_height"]
    assert table.factor_markdown([{"recipe": "vae"}]) == ""                # runs before capture was recorded
    assert table.readout_markdown([{"recipe": "vae", "capture_nmi": {"a": 1.0}}]) == ""   # runs before the read-out
    records = [{"recipe": "vae", "seed": 0, "capture_nmi": {"a": 0.1, "b": 0.0}, "readout_nmi": {"a": 0.734, "b": 0.05}}]
    assert "| vae, seed 0 | 0.73 | 0.05 |" in table.readout_markdown(records)


def test_the_capture_curve_has_a_row_per_probe_and_only_runs_with_probes(tmp_path):
    paths = state.study_paths("s", str(tmp_path / "studies"), str(tmp_path / "scratch"))
    specs = plan.plan_trials(["vae"], [0, 1], [], 20)
    state.add_to_manifest(paths, specs)
    from submission.files import atomic_write_json
    names = ["shape", "angle"]
    curve = [{"step": 2000, "capture_nmi": {"shape": 0.05, "angle": 0.2}, "captured": ["angle"]},
             {"step": 4013, "capture_nmi": {"shape": 0.31, "angle": 0.5}, "captured": ["shape", "angle"]}]
    for spec in specs:                                  # seed 1 predates the probe
        extra = {"capture_curve": curve} if spec.seed == 0 else {}
        atomic_write_json(_record(spec, {k: 0.5 for k in table.LEADERBOARD_KEYS}, capture_nmi={"shape": 0.3, "angle": 0.6},
                                  factor_names=names, captured_factors=2, **extra), paths.run_file(spec))
    text = table.write_table(paths)
    rows = [line for line in text.splitlines() if line.startswith("| vae, seed")]
    assert rows[-2:] == ["| vae, seed 0 | 2000 | 0.05 | **0.20** | 1 |", "| vae, seed 0 | 4013 | **0.31** | **0.50** | 2 |"]
    assert "| run | step | shape | angle | captured |" in text and "seed 1 | 2000" not in text
    assert table.curve_markdown([{"recipe": "vae", "capture_nmi": {"a": 1.0}}]) == ""
    # A setting keeps its letter in every table, though only some of its runs have probes.
    records = [{"recipe": "vae", "seed": 0, "bindings": ["a = 1"], "capture_nmi": {"x": 0.5}},
               {"recipe": "vae", "seed": 0, "bindings": ["b = 2"], "capture_nmi": {"x": 0.5}, "capture_curve": curve[:1]}]
    assert "| vae (B), seed 0 | 2000 |" in table.curve_markdown(records) and "(B) b = 2." in table.curve_markdown(records)
    assert "(A)" not in table.curve_markdown(records)


def test_a_run_of_an_earlier_recipe_version_is_its_own_row_never_the_recipe_as_is(tmp_path):
    from study.trial import recipe_sha
    paths = state.study_paths("s", str(tmp_path / "studies"), str(tmp_path / "scratch"))
    specs = plan.plan_trials(["vae"], [0, 1], [], 20)
    state.add_to_manifest(paths, specs)
    from submission.files import atomic_write_json
    for spec, sha in zip(specs, ["0123456789ab", recipe_sha("vae")]):
        atomic_write_json(_record(spec, {k: 0.5 for k in table.LEADERBOARD_KEYS}, recipe_sha=sha), paths.run_file(spec))
    text = table.write_table(paths)
    assert "| vae | earlier recipe file 01234567 | 1 |" in text and "| vae | recipe as is | 1 |" in text


# --- real studies on an embedded Ray (slow) ---------------------------------------------------------------------------
def _study(tmp_path, *args, **popen):
    env = dict(os.environ, OMP_NUM_THREADS="1", KIT_PROGRESS="plain", KIT_PROGRESS_QUIET_S="0")
    return subprocess.Popen([sys.executable, "-m", "study", "run", *args, *_dirs(tmp_path)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def _runs(tmp_path, name):
    folder = tmp_path / "studies" / name / "runs"
    return sorted(p.name for p in folder.glob("*.json") if not p.name.endswith(".failed.json")) if folder.exists() else []


@pytest.mark.slow
def test_tiny_study_killed_after_its_first_trial_resumes_with_exactly_the_missing_ones(tmp_path):
    args = ["--name", "tiny", "--recipes", "vae", "beta_vae", "--seeds", "0", "1", "--cpus_per_trial", "1", *TINY]
    first = _study(tmp_path, *args)
    deadline = time.monotonic() + 900
    while not _runs(tmp_path, "tiny") and first.poll() is None and time.monotonic() < deadline:
        time.sleep(2)
    assert _runs(tmp_path, "tiny"), first.communicate()[0]
    first.send_signal(signal.SIGINT)                      # Ctrl-C: Tune stops the trials still running
    first.communicate(timeout=120)
    kept = {name: (tmp_path / "studies" / "tiny" / "runs" / name).read_text() for name in _runs(tmp_path, "tiny")}
    assert 1 <= len(kept) < 4
    assert not [line for line in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout.splitlines()
                if str(tmp_path) in line and "submission.train" in line], "a stage outlived its study"

    second = _study(tmp_path, *args)
    out = second.communicate(timeout=1200)[0]
    assert second.returncode == 0, out
    assert f"{4 - len(kept)} ran, 0 failed, {len(kept)} already done" in out, out
    assert len(_runs(tmp_path, "tiny")) == 4
    for name, text in kept.items():                       # the finished trials were not run again
        assert (tmp_path / "studies" / "tiny" / "runs" / name).read_text() == text
    table_md = (tmp_path / "studies" / "tiny" / "table.md").read_text()
    assert "| vae | recipe as is | 2 |" in table_md and "| beta_vae | recipe as is | 2 |" in table_md
    assert "| run | object_colour | object_shape | object_size | camera_height |" in table_md   # the dataset's order
    assert not [p for p in (tmp_path / "studies").rglob("*") if p.suffix in (".pt", ".pkl", ".log")]


@pytest.mark.slow
def test_a_failing_trial_is_recorded_and_the_others_finish(tmp_path):
    # 'nope' parses as a gin string, so the plan accepts it; the trainer rejects it when the trial runs.
    name = "fails"
    study = _study(tmp_path, "--name", name, "--recipes", "vae", "--seeds", "0", "--grid",
                   "training.precision=['fp32','nope']", "--steps", "20", "--pretrain_steps", "0", "--quick_eval",
                   "--dataset", "mpi3d_sim_toy")
    out = study.communicate(timeout=1200)[0]
    assert study.returncode == 1 and "1 ran, 1 failed" in out, out
    paths = state.study_paths(name, str(tmp_path / "studies"), str(tmp_path / "scratch"))
    states = {spec.bindings[0]: state.trial_state(paths, spec, False) for spec in state.load_manifest(paths)}
    assert states == {"training.precision = 'fp32'": "done", "training.precision = 'nope'": "failed"}
    failed = next(s for s in state.load_manifest(paths) if "nope" in s.bindings[0])
    assert "fine-tune failed" in state.failure(paths, failed.trial_id)
    assert f"study {name}: trial {failed.trial_id} failed: TrialFailed: fine-tune failed" in out, out  # said, not just filed
    assert json.loads((tmp_path / "studies" / name / "study.json").read_text())["name"] == name
