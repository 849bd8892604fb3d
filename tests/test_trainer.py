"""The trainer: resume reproduces the uninterrupted run, NaN rollback, the deadline and signal paths write the export,
the warm-up-aware stop rule, the batch prefetch thread, KL per dimension in the log, TensorBoard and the report hook."""
import json
import os
import signal
import threading
import time

import numpy as np
import pytest
import torch

from submission.schedules import clock_of

from submission.models import PrunedVAE, build_model, make_model
from submission.objectives import build_objective
from submission.objectives.base import Objective
from submission.checkpoints import load_checkpoint
from submission.hardware import seed_everything
from submission.trainer import Trainer, TrainingError


class TinyData:
    """Two factors rendered as a smooth 64x64 pattern: cheap, deterministic given the generator."""
    factors_num_values = [5, 4]
    num_factors = 2
    observation_shape = (64, 64, 3)

    def __init__(self):
        self.weights = np.random.default_rng(123).normal(0, 2.0, size=(2, 3 * 64 * 64))

    def sample_batch(self, n, rng):
        factors = np.stack([rng.integers(0, k, size=n) for k in self.factors_num_values], axis=1)
        values = factors / np.array(self.factors_num_values) - 0.5
        images = np.round(255 / (1 + np.exp(-(values @ self.weights)))).astype(np.uint8).reshape(n, 3, 64, 64)
        return torch.from_numpy(images), torch.from_numpy(factors)


class SlowStartData(TinyData):
    """TinyData whose first batches are slow, as lazily built dataset tables make them; ``fail_at`` raises instead."""

    def __init__(self, sleeps=(), fail_at=None):
        super().__init__()
        self.sleeps, self.fail_at, self.calls = list(sleeps), fail_at, 0

    def sample_batch(self, n, rng):
        self.calls += 1
        if self.calls == self.fail_at:
            raise OSError("simulated read error")
        if self.calls <= len(self.sleeps):
            time.sleep(self.sleeps[self.calls - 1])
        return super().sample_batch(n, rng)


def _prefetch_threads():
    return [t for t in threading.enumerate() if t.name == "batch-prefetch" and t.is_alive()]


@pytest.fixture(autouse=True)
def _local_progress_log(tmp_path, monkeypatch):
    yield
    assert not _prefetch_threads(), "a batch prefetch thread outlived its run"


def _trainer(out, kind="pvae", objective="pvae", seed=0, data=None, **kwargs):
    rng = seed_everything(seed)
    model = make_model(kind=kind, architecture="mlp", latent_dim=4)
    settings = dict(max_steps=20, batch_size=8, learning_rate=1e-3, precision="fp32", checkpoint_every_s=1e9,
                    log_every_s=1e9, compile="off")
    settings.update(kwargs)
    return Trainer(model, build_objective(objective), data or TinyData(), str(out), seed=seed, rng=rng, **settings)


def _log(run_dir):
    with open(os.path.join(run_dir, "log.jsonl")) as f:
        return [json.loads(line) for line in f]


class CrashAt(Objective):
    """Wraps an objective and raises at one step, as a crash or a kill would."""

    def __init__(self, inner, crash_step):
        super().__init__()
        self.inner, self.crash_step, self.name = inner, crash_step, inner.name

    def forward(self, model, x, factors, step):
        if clock_of(step).step == self.crash_step:
            raise RuntimeError("simulated crash")
        return self.inner(model, x, factors, step)


def test_resume_after_a_crash_reproduces_the_uninterrupted_run(tmp_path):
    straight = _trainer(tmp_path / "straight")
    straight.run()

    crashed = _trainer(tmp_path / "resumed", checkpoint_every_s=0.0)     # a checkpoint after every step
    crashed.objective = CrashAt(crashed.objective, crash_step=13)
    with pytest.raises(RuntimeError, match="simulated crash"):
        crashed.run()
    assert not _prefetch_threads()
    assert load_checkpoint(str(tmp_path / "resumed" / "checkpoint.pt"))["step"] == 13

    resumed = _trainer(tmp_path / "resumed", seed=99)     # a different seed: everything must come from the checkpoint
    resumed.run()
    assert resumed.step_count == straight.step_count == 20
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    for a, b in zip(straight.optimizer.state_dict()["state"].values(), resumed.optimizer.state_dict()["state"].values()):
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert straight.rng.bit_generator.state == resumed.rng.bit_generator.state


def test_prefetch_draws_the_same_batches_as_drawing_in_the_loop(tmp_path):
    """The prefetch thread changes no number: same weights, same generator state as drawing each batch in the loop."""
    inline = _trainer(tmp_path / "inline", prefetch=0)
    inline.run()
    ahead = _trainer(tmp_path / "ahead", prefetch=2)
    ahead.run()
    assert inline.step_count == ahead.step_count == 20
    for (name, a), b in zip(inline.model.state_dict().items(), ahead.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert inline.rng.bit_generator.state == ahead.rng.bit_generator.state
    # ... and that state draws the batch after the 20th: the checkpoint resumes with the next unconsumed batch.
    assert load_checkpoint(str(tmp_path / "ahead" / "checkpoint.pt"))["rng"]["numpy"] == inline.rng.bit_generator.state


def test_an_error_in_the_prefetch_thread_surfaces_and_keeps_the_export(tmp_path):
    export = tmp_path / "representation" / "pytorch_model.pt"
    trainer = _trainer(tmp_path / "train", data=SlowStartData(fail_at=6), max_steps=10**9, snapshot_every=2,
                       export_path=str(export), prefetch=2)
    with pytest.raises(OSError, match="simulated read error"):
        trainer.run()
    assert export.exists() and not _prefetch_threads()
    assert load_checkpoint(str(tmp_path / "train" / "checkpoint.pt"))["step"] == 4     # the last snapshot


class NaNOnce(Objective):
    name = "beta_vae"

    def __init__(self, bad_steps):
        super().__init__()
        self.inner, self.bad_steps, self.calls = build_objective("beta_vae"), set(bad_steps), 0

    def forward(self, model, x, factors, step):
        self.calls += 1
        terms = self.inner(model, x, factors, step)
        if self.calls in self.bad_steps:
            terms["kl"] = terms["kl"] * float("nan")
        return terms


def test_nan_loss_rolls_back_with_a_lower_learning_rate(tmp_path):
    trainer = _trainer(tmp_path, kind="vae", objective="beta_vae", snapshot_every=5)
    trainer.objective = NaNOnce(bad_steps={8})          # the 8th call: step 7, after the snapshot at step 5
    summary = trainer.run()
    assert summary["stopped"] == "max_steps" and summary["rollbacks"] == 1
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.5e-3)
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_a_nan_in_the_last_step_is_found_before_the_final_checkpoint(tmp_path):
    """The NaN check is read at boundaries only; the end of the run is one: the final checkpoint is never diverged."""
    trainer = _trainer(tmp_path, kind="vae", objective="beta_vae", snapshot_every=1000)
    trainer.objective = NaNOnce(bad_steps={20})         # the last step; the only snapshot is the start
    summary = trainer.run()
    assert summary["stopped"] == "max_steps" and summary["rollbacks"] == 1 and summary["step"] == 20
    assert trainer.objective.calls == 40                # rolled back to step 0, then 20 good steps
    state = load_checkpoint(str(tmp_path / "checkpoint.pt"))
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert all(np.isfinite(r["loss"]) for r in _log(tmp_path) if "loss" in r)


def test_repeated_nan_stops_with_the_last_good_model(tmp_path):
    trainer = _trainer(tmp_path, kind="vae", objective="beta_vae", snapshot_every=5, max_rollbacks=2,
                       export_path=str(tmp_path / "rep" / "pytorch_model.pt"))
    trainer.objective = NaNOnce(bad_steps=set(range(3, 100)))
    summary = trainer.run()
    assert summary["stopped"] == "diverged"
    assert os.path.exists(tmp_path / "rep" / "pytorch_model.pt")
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_budget_stops_in_time_and_writes_the_export(tmp_path):
    export = tmp_path / "representation" / "pytorch_model.pt"
    trainer = _trainer(tmp_path / "train", budget_s=6.0, max_steps=10**9, export_path=str(export),
                       safety_margin_s=1.0)
    start = time.monotonic()
    summary = trainer.run()
    assert summary["stopped"] == "budget" and summary["step"] > 0
    assert time.monotonic() - start < 6.0
    assert not _prefetch_threads()
    loaded = torch.jit.load(str(export))
    x = torch.rand(4, 3, 64, 64)
    assert torch.allclose(loaded(x), trainer.model.representation(x), atol=1e-5)
    assert (tmp_path / "train" / "config.gin").exists() and (tmp_path / "train" / "log.jsonl").exists()


def test_slow_first_batches_do_not_end_a_short_run(tmp_path):
    """A 3 s first batch once made the stop rule reserve 2x that for every later step and stop after step 1."""
    export = tmp_path / "representation" / "pytorch_model.pt"
    trainer = _trainer(tmp_path / "train", data=SlowStartData(sleeps=(3.0, 0.2, 0.2)), budget_s=8.0,
                       max_steps=10**9, export_path=str(export), safety_margin_s=0.5)
    summary = trainer.run()
    assert summary["stopped"] == "budget"
    assert summary["step"] >= 20, summary
    assert time.monotonic() < trainer.deadline and export.exists()
    assert load_checkpoint(str(tmp_path / "train" / "checkpoint.pt"))["step"] == summary["step"]


def test_the_slow_step_estimate_leaves_out_warm_up_and_outliers(tmp_path):
    trainer = _trainer(tmp_path, budget_s=100.0)
    assert trainer.budget.slow_step_s() == 1.0                             # nothing measured yet
    for dt in (9.0, 0.2, 0.1):                                       # the warm-up steps
        trainer.budget.record_step_time(dt)
    assert trainer.budget.slow_step_s() == pytest.approx(0.2)               # 2x the fastest warm-up step
    for dt in [0.05] * 19 + [3.0]:                                   # one outlier among 20
        trainer.budget.record_step_time(dt)
    assert trainer.budget.slow_step_s() == pytest.approx(0.1)               # 2x the 90th percentile
    for dt in [0.5] * 5:
        trainer.budget.record_step_time(dt)
    assert trainer.budget.slow_step_s() == pytest.approx(1.0)               # slower steps lately: the estimate follows


def test_sigterm_stops_cleanly_with_checkpoint_and_export(tmp_path):
    export = tmp_path / "representation" / "pytorch_model.pt"
    trainer = _trainer(tmp_path / "train", max_steps=10**9, export_path=str(export))
    timer = threading.Timer(1.5, os.kill, args=(os.getpid(), signal.SIGTERM))
    timer.start()
    summary = trainer.run()
    timer.join()
    assert summary["stopped"] == "signal SIGTERM"
    assert export.exists()
    assert load_checkpoint(str(tmp_path / "train" / "checkpoint.pt"))["step"] == summary["step"]
    assert signal.getsignal(signal.SIGTERM) is not trainer._on_signal      # handlers restored
    assert not _prefetch_threads()


def test_log_records_kl_per_dimension_learning_rate_and_active_dims(tmp_path):
    trainer = _trainer(tmp_path / "vae", kind="vae", objective="beta_vae", max_steps=6, log_every_s=0.0)
    trainer.run()
    records = [r for r in _log(tmp_path / "vae") if "event" not in r]
    assert [r["step"] for r in records] == list(range(1, 7))
    for record in records:
        kl = record["kl_per_dim"]
        assert len(kl) == 4 and all(isinstance(v, float) and v >= 0 for v in kl)
        assert sum(kl) == pytest.approx(record["kl"], rel=1e-4, abs=1e-5)      # beta 1: the KL term is their sum
        assert record["kl_active_dims"] == sum(v > 0.1 for v in kl)
        assert record["lr"] == pytest.approx(1e-3)

    trainer = _trainer(tmp_path / "pvae", max_steps=4, log_every_s=0.0)
    trainer.run()
    records = [r for r in _log(tmp_path / "pvae") if "event" not in r]
    assert all(len(r["kl_per_dim"]) == 4 and "active_dims" in r and "lr" in r for r in records)

    from submission.visualize.curves import split_series
    groups = split_series(records)
    assert sorted(groups["KL per dimension"]) == ["z0", "z1", "z2", "z3"]
    assert "lr" in groups["learning rate"] and "active_dims" in groups["active dimensions"]
    assert "progress" in groups["schedules"] and "tau" not in groups["loss terms"]
    assert [r["progress"] for r in records] == sorted(r["progress"] for r in records)


@pytest.mark.slow          # importing TensorBoard takes 3-9 s here
def test_tensorboard_writes_an_events_file(tmp_path):
    pytest.importorskip("tensorboard")
    from submission.visualize import TensorBoardHook
    hook = TensorBoardHook(str(tmp_path / "train" / "tensorboard"), TinyData())
    trainer = _trainer(tmp_path / "train", max_steps=3, log_every_s=0.0, checkpoint_every_s=0.0, hooks=[hook])
    trainer.run()
    assert hook.board.writer is None                                  # closed
    events = [name for name in os.listdir(tmp_path / "train" / "tensorboard") if name.startswith("events.out")]
    assert events and os.path.getsize(tmp_path / "train" / "tensorboard" / events[0]) > 0


def test_tensorboard_is_off_by_default(tmp_path):
    trainer = _trainer(tmp_path / "train", max_steps=2)
    trainer.run()
    assert not (tmp_path / "train" / "tensorboard").exists()


def test_resume_refuses_a_different_architecture(tmp_path):
    _trainer(tmp_path, max_steps=2).run()
    seed_everything(0)
    other = build_model({"kind": "pvae", "architecture": "mlp", "latent_dim": 5})
    trainer = Trainer(other, build_objective("pvae"), TinyData(), str(tmp_path), precision="fp32")
    with pytest.raises(TrainingError, match="architecture"):
        trainer.run()


@pytest.mark.parametrize("no_report", [False, True])
def test_train_cli_writes_the_report_after_the_export_unless_told_not_to(tmp_path, monkeypatch, no_report):
    import submission.visualize
    from submission import train
    calls = []

    def fake_report(run_dir, model, dataset):
        calls.append((run_dir, os.path.exists(tmp_path / "representation" / "pytorch_model.pt")))

    monkeypatch.setattr(submission.visualize, "write_training_report", fake_report)
    argv = ["--gin_file", "submission/configs/beta_vae.gin", "--dataset", "mpi3d_sim_toy", "--output",
            str(tmp_path / "train"), "--budget", "60s", "--max_steps", "2", "--gin_binding", "model.architecture='mlp'",
            "--gin_binding", "training.batch_size=8"] + (["--no_report"] if no_report else [])
    summary = train.run(train.build_parser("submission.train", pretrain=False).parse_args(argv))
    assert summary["step"] == 2
    assert calls == ([] if no_report else [(str(tmp_path / "train"), True)])


class OracleEncoderPVAE(PrunedVAE):
    """A PVAE whose encoder and decoder are exact and frozen for TinyData's two factors: latents 0-1 carry the
    factors, latents 2-5 carry nothing. Only the gates learn, so the test isolates the gate mechanics."""

    def __init__(self):
        super().__init__(architecture="mlp", latent_dim=6, init_log_alpha=1.0)
        for p in self.parameters():
            p.requires_grad_(False)
        self.gate.log_alpha.requires_grad_(True)
        weights = torch.from_numpy(TinyData().weights).float()
        self.register_buffer("weights", weights)
        self.register_buffer("unmix", torch.linalg.pinv(weights))

    def encode(self, x):
        logits = torch.logit(x.flatten(1).clamp(1e-3, 1 - 1e-3))
        factors = logits @ self.unmix / 0.3                       # roughly unit variance
        mu = torch.cat([factors, torch.zeros(len(x), 4)], 1)
        logvar = torch.tensor([-4.0, -4.0, 0.0, 0.0, 0.0, 0.0]).expand(len(x), 6)
        return {"mu": mu, "logvar": logvar}

    def forward(self, x):
        out = super().forward(x)
        out["logits"] = (0.3 * out["z"][:, :2] @ self.weights).reshape(x.shape)
        return out


def test_pvae_gates_switch_off_surplus_dimensions(tmp_path):
    """Two true factors, six latents: the surplus gates shut, the informative ones stay open."""
    rng = seed_everything(0)
    model = OracleEncoderPVAE()
    trainer = Trainer(model, build_objective("pvae"), TinyData(), str(tmp_path), rng=rng, max_steps=300,
                      batch_size=32, learning_rate=0.05, precision="fp32", checkpoint_every_s=1e9, log_every_s=1e9)
    trainer.run()
    gate = model.gate.deterministic()
    assert model.active_dimensions() == 2, gate
    assert torch.all(gate[:2] == 1) and torch.all(gate[2:] == 0), gate


def test_lr_multipliers_give_the_gates_their_own_rate(tmp_path):
    trainer = _trainer(tmp_path, learning_rate=1e-4, lr_multipliers={"gate.log_alpha": 100.0})
    rates = {id(p): g["lr"] for g in trainer.optimizer.param_groups for p in g["params"]}
    assert rates[id(trainer.model.gate.log_alpha)] == pytest.approx(1e-2)
    others = [rates[id(p)] for n, p in trainer.model.named_parameters() if "log_alpha" not in n]
    assert others and all(r == pytest.approx(1e-4) for r in others)
    before = trainer.model.gate.log_alpha.detach().clone()
    trainer.run()
    moved = (trainer.model.gate.log_alpha.detach() - before).abs().max()
    assert moved > 20 * 0.3e-4 * 20  # far more than 20 steps at the base rate could move it


def test_lr_multipliers_that_match_nothing_are_refused(tmp_path):
    with pytest.raises(TrainingError, match="match no trainable parameter"):
        _trainer(tmp_path, lr_multipliers={"gate.log_alfa": 100.0})


def test_any_torch_scheduler_through_gin_and_plateau_state_resumes(tmp_path):
    from submission.schedules import TorchLRSchedule
    trainer = _trainer(tmp_path / "step", max_steps=6, lr_scheduler=TorchLRSchedule("StepLR", step_size=3, gamma=0.1))
    trainer.run()
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.01)
    with pytest.raises(TrainingError, match="TorchLRSchedule"):
        _trainer(tmp_path / "bad", lr_scheduler="cosine")
    plateau = _trainer(tmp_path / "plateau", max_steps=5, lr_scheduler="plateau", plateau_interval=4)
    plateau.run()
    assert len(plateau.rates.torch_schedule.pending) == 1  # 5 steps: one average taken, one loss pending
    resumed = _trainer(tmp_path / "plateau", max_steps=5, lr_scheduler="plateau", plateau_interval=4)
    assert resumed.resume_if_possible()
    assert resumed.rates.torch_schedule.pending_values() == plateau.rates.torch_schedule.pending_values()


def test_train_api_budget_counts_from_the_call_not_the_import(tmp_path, monkeypatch):
    from submission import train
    from submission import budget
    started = budget.process_start_time() - 3600
    monkeypatch.setattr(budget, "process_start_time", lambda: started)  # as if the process started an hour ago
    argv = ["--gin_file", "submission/configs/beta_vae.gin", "--dataset", "mpi3d_sim_toy", "--output",
            str(tmp_path / "train"), "--budget", "60s", "--max_steps", "2", "--gin_binding", "model.architecture='mlp'",
            "--gin_binding", "training.batch_size=8", "--no_report"]
    assert train.run(train.build_parser("submission.train", pretrain=False).parse_args(argv))["step"] == 2


@pytest.mark.parametrize("objective, kind", [("pvae", "pvae"), ("beta_vae", "vae"), ("betatcvae", "vae"),
                                             ("factorvae", "vae"), ("dipvae_i", "vae"), ("qlae", "qlae")])
def test_a_step_reads_nothing_back_from_the_device_between_log_windows(tmp_path, monkeypatch, objective, kind):
    """Every loss term, the loss and the objective's diagnostics stay tensors until a log window closes: between two
    windows no step calls ``Tensor.item``, ``float``, ``int`` or ``bool`` on a tensor (on a GPU each would stop the
    host): the NaN check included, which is read at the boundaries."""
    import inspect
    import submission.objectives.zoo  # noqa: F401  (FactorVAE, DIP-VAE: the recipes import it)
    # What the loop does at a window or checkpoint boundary (and the hooks it calls there), not in a step.
    boundary = {"close_window", "diagnostics", "save_checkpoint", "export", "state_dict", "deepcopy", "call", "_rollback",
                "take"}
    outside = []
    real = {name: getattr(torch.Tensor, name) for name in ("item", "__float__", "__int__", "__bool__")}

    def counted(real):
        def conversion(self, *args):
            stack = inspect.stack()[1:40]
            callers = {frame.function for frame in stack}
            # The kit's own conversions; torch's single-tensor Adam reads its step counter, a CPU tensor, itself.
            if "_loop" in callers and not callers & boundary and "site-packages" not in stack[0].filename:
                outside.append(f"{stack[0].function} ({os.path.basename(stack[0].filename)}:{stack[0].lineno})")
            return real(self, *args)
        return conversion

    import gin
    gin.bind_parameter("FactorVAE.latent_dim", 4)   # the tiny model's codes
    trainer = _trainer(tmp_path / "run", kind=kind, objective=objective, max_steps=12, log_every_s=1e9)
    for name, method in real.items():
        monkeypatch.setattr(torch.Tensor, name, counted(method))
    summary = trainer.run()
    monkeypatch.undo()
    assert summary["step"] == 12 and outside == [], outside
    records = [r for r in _log(tmp_path / "run") if "event" not in r]
    assert records and all(isinstance(r["loss"], float) and np.isfinite(r["loss"]) for r in records)
