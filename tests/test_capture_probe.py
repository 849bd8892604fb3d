"""The capture probe: what it measures (a representation that is the factors scores ~1, a constant 0), when it runs
(the first log record past each multiple), that it leaves training exactly as it was, and that it yields to the deadline."""
import json
import os
import types

import numpy as np
import pytest
import torch

from submission.capture_probe import CaptureProbe, capture_curve, describe
from submission.hardware import seed_everything
from submission.metrics.captured import factor_capture
from submission.models import make_model
from submission.objectives import build_objective
from submission.trainer import Trainer

SIZES = np.array([4, 3, 5])


class PixelFactors:
    """Three factors written into the three channels of every pixel: an image is its factors."""
    factors_num_values = list(SIZES)
    num_factors = 3
    observation_shape = (64, 64, 3)
    factor_names = ("a", "b", "c")

    def sample_factors(self, n, random_state):
        return np.stack([random_state.randint(0, k, size=n) for k in SIZES], axis=1)

    def sample_observations_from_factors(self, factors, random_state):
        values = ((np.asarray(factors) + 0.5) / SIZES).astype(np.float32)
        return np.broadcast_to(values[:, None, None, :], (len(factors), 64, 64, 3)).copy()

    def sample_batch(self, n, rng):
        factors = np.stack([rng.integers(0, k, size=n) for k in SIZES], axis=1)
        images = np.round(255 * self.sample_observations_from_factors(factors, None)).astype(np.uint8)
        return torch.from_numpy(np.moveaxis(images, -1, 1).copy()), torch.from_numpy(factors)


class Corner(torch.nn.Module):
    """A representation that reads the factors back from pixel (0, 0), or a constant."""

    def __init__(self, constant=False):
        super().__init__()
        self.constant = constant
        self.calls_in_training_mode = 0

    def representation(self, x):
        self.calls_in_training_mode += int(self.training)
        return torch.zeros(len(x), 3) if self.constant else x[:, :, 0, 0]


def _fake_trainer(model, step=0, time_left=1e9):
    lines, records = [], []
    log = types.SimpleNamespace(line=lines.append, write=records.append)
    budget = types.SimpleNamespace(time_left=lambda: time_left)
    trainer = types.SimpleNamespace(model=model, device=torch.device("cpu"), step_count=step, budget=budget,
                                    reserve_s=lambda: 5.0, log=log)
    return trainer, lines, records


def test_the_factors_are_captured_and_a_constant_is_not():
    probe = CaptureProbe(PixelFactors(), every_steps=10, num_samples=600, chunk=64)
    trainer, lines, records = _fake_trainer(Corner())
    probe.on_start(trainer)
    probe.on_log({"step": 10})
    assert [r["step"] for r in records] == [10]
    nmi = records[0]["capture_nmi"]
    assert set(nmi) == {"a", "b", "c"} and min(nmi.values()) > 0.99, nmi
    assert records[0]["captured"] == ["a", "b", "c"] and lines[0].startswith("step 10: captured 3 of 3 (a 1.00")
    # The same numbers as factor_capture on the same draws (the probe's factors are drawn with its seed).
    images = PixelFactors().sample_observations_from_factors(probe.factors, None)
    expected = factor_capture(images[:, 0, 0, :], probe.factors, PixelFactors.factor_names)["capture_nmi"]
    assert nmi == expected

    probe = CaptureProbe(PixelFactors(), every_steps=10, num_samples=600)
    trainer, lines, records = _fake_trainer(Corner(constant=True))
    probe.on_start(trainer)
    probe.on_log({"step": 10})
    assert records[0]["captured"] == [] and max(records[0]["capture_nmi"].values()) == 0.0
    assert lines == [f"step 10: captured 0 of 3 in {records[0]['seconds']:.1f} s"]


def test_the_probe_runs_at_the_first_record_past_each_multiple_and_in_eval_mode():
    model = Corner()
    model.train()
    probe = CaptureProbe(PixelFactors(), every_steps=10, num_samples=100)
    trainer, lines, records = _fake_trainer(model, step=7)      # a resumed run: the next multiple is 10
    probe.on_start(trainer)
    for step in (8, 9, 12, 15, 19, 31, 33, 40):
        probe.on_log({"step": step})
    assert [r["step"] for r in records] == [12, 31, 40]
    assert model.training and model.calls_in_training_mode == 0


def test_a_probe_that_would_eat_the_reserve_is_skipped():
    probe = CaptureProbe(PixelFactors(), every_steps=10, num_samples=100)
    trainer, lines, records = _fake_trainer(Corner())
    probe.on_start(trainer)
    probe.on_log({"step": 10})                  # the first probe measures its own time
    probe.seconds = 2.0
    trainer.budget.time_left = lambda: 5.0 + 5.9   # 5.9 s spare < 3 x 2 s
    probe.on_log({"step": 20})
    assert [r["step"] for r in records] == [10]
    assert lines[-1] == "step 20: capture probe skipped (6 s left before the final checkpoint)"
    probe = CaptureProbe(PixelFactors(), every_steps=10, num_samples=100)   # the first probe: a 10 s estimate
    trainer, lines, records = _fake_trainer(Corner(), time_left=5.0 + 29.0)
    probe.on_start(trainer)
    probe.on_log({"step": 10})
    assert records == [] and lines == ["step 10: capture probe skipped (29 s left before the final checkpoint)"]


def test_off_and_bad_settings():
    probe = CaptureProbe(PixelFactors(), every_steps=0)
    trainer, lines, records = _fake_trainer(Corner())
    probe.on_start(trainer)
    probe.on_log({"step": 10 ** 6})
    assert records == [] and lines == []
    with pytest.raises(ValueError, match="every_steps >= 0 and num_samples >= 2"):
        CaptureProbe(PixelFactors(), every_steps=-1)


def _train(out, probe_every):
    rng = seed_everything(0)
    model = make_model(kind="vae", architecture="mlp", latent_dim=4)
    data = PixelFactors()
    trainer = Trainer(model, build_objective("beta_vae"), data, str(out), seed=0, rng=rng, max_steps=12, batch_size=8,
                      learning_rate=1e-3, precision="fp32", checkpoint_every_s=1e9, log_every_s=0.0, compile="off",
                      hooks=[CaptureProbe(data, every_steps=probe_every, num_samples=200)])
    trainer.run()
    return model


def test_training_with_the_probe_is_training_without_it(tmp_path):
    with_probe = _train(tmp_path / "probe", probe_every=5)
    without = _train(tmp_path / "none", probe_every=0)
    for (name, a), b in zip(with_probe.state_dict().items(), without.state_dict().values()):
        assert torch.equal(a, b), name
    curve = capture_curve(os.path.join(tmp_path / "probe", "log.jsonl"))
    assert [point["step"] for point in curve] == [5, 10]
    assert set(curve[0]["capture_nmi"]) == {"a", "b", "c"}
    assert capture_curve(os.path.join(tmp_path / "none", "log.jsonl")) == []
    with open(tmp_path / "probe" / "log.jsonl") as f:
        events = [json.loads(line) for line in f if '"capture"' in line]
    assert all(e["event"] == "capture" and e["seconds"] >= 0 for e in events) and len(events) == 2


def test_describe():
    result = {"capture_nmi": {"x": 1.0, "y": 0.31, "z": 0.05}, "captured": ["x", "y"]}
    assert describe(result) == "captured 2 of 3 (x 1.00, y .31)"


def test_the_report_draws_the_probe_in_its_last_panel(tmp_path):
    from submission.visualize.curves import curves_figure
    _train(tmp_path, probe_every=5)
    from submission.training_log import window_records
    log = os.path.join(tmp_path, "log.jsonl")
    records, _ = window_records(log)
    panel = curves_figure(records, capture_curve(log)).axes[-1]
    assert panel.get_visible() and panel.get_title().startswith("captured factors")
    lines = {line.get_label(): list(line.get_xdata()) for line in panel.get_lines() if not line.get_label().startswith("_")}
    assert lines == {"a": [5, 10], "b": [5, 10], "c": [5, 10]}
    assert not curves_figure(records).axes[-1].get_visible()


def test_the_reports_capture_note_tells_kept_but_spread_from_dropped():
    """Codes (a XOR b, b) of two binary factors and nothing of c: no single code says anything of a (each is independent
    of it), both together determine it; so the note has b captured, a kept but spread, c dropped."""
    from submission.visualize.run_report import captured_note

    class Binary(PixelFactors):
        factors_num_values = [2, 2, 3]

        def sample_factors(self, n, random_state):
            return np.stack([random_state.randint(0, k, size=n) for k in self.factors_num_values], axis=1)

        def sample_observations_from_factors(self, factors, random_state):
            values = np.asarray(factors, dtype=np.float32) / 2
            return np.broadcast_to(values[:, None, None, :], (len(factors), 64, 64, 3)).copy()

    class Xor:
        def representation(self, x):
            a, b = (x[:, 0, 0, 0] * 2).round(), (x[:, 1, 0, 0] * 2).round()
            return torch.stack([(a + b) % 2, b], 1)

    note = captured_note(Xor(), Binary(), seed=0, num_samples=2000)
    assert "2,000 samples): 1 of 3: b. Per factor: a 0.00, b 1.00, c 0.00." in note, note
    assert "the same scale): a 1.00, b 1.00, c 0.00. Kept but spread over several codes: a; dropped: c." in note, note
