"""``training.compile``: a compiled run matches an eager one, and resume, rollback, export and the deadline keep working
with it; a failing compile falls back to eager in one line. Compiles are cached under scratch/ (the first ~30 s)."""
import time

import pytest
import torch

from submission import compiled as compiled_module
from submission.checkpoints import load_checkpoint
from submission.export import verify_export_of_run
from tests.test_faults import nan_from
from tests.test_trainer import CrashAt, _trainer


def _weights(trainer):
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def _close(a, b, tol=1e-4):
    return all(torch.allclose(a[k].float(), b[k].float(), rtol=tol, atol=tol) for k in a)


def test_auto_compiles_long_cpu_stages_and_cuda_and_a_bad_choice_is_one_line():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert compiled_module.resolve_compile("auto", cuda, budget_s=60)
    assert not compiled_module.resolve_compile("auto", cpu, budget_s=240)          # a demo stage: the compile costs more
    assert compiled_module.resolve_compile("auto", cpu, budget_s=3600)
    assert compiled_module.resolve_compile("auto", cpu, budget_s=None, max_steps=20000)
    assert not compiled_module.resolve_compile("auto", cpu, budget_s=None, max_steps=500)
    assert compiled_module.resolve_compile("on", cpu, budget_s=1) and not compiled_module.resolve_compile("off", cuda)
    with pytest.raises(ValueError, match="training.compile 'fast' is unknown: expected auto, on, off or cudagraphs"):
        compiled_module.resolve_compile("fast", cpu)


def test_compiled_run_matches_eager_resumes_after_a_crash_and_exports(tmp_path, capsys):
    eager = _trainer(tmp_path / "eager", max_steps=12, export_path=str(tmp_path / "eager.pt"))
    first_eager, _ = eager.step(eager.next_batch())
    on = _trainer(tmp_path / "probe", max_steps=12, compile="on")
    assert on.compiler.active
    first_compiled, _ = on.step(on.next_batch())
    # Step 1: the same loss within float tolerance (the random draws come from torch's generator in both).
    assert torch.allclose(first_compiled.detach(), first_eager.detach(), rtol=1e-5)
    assert on.compiler.active, "the compiled step fell back to eager"

    eager = _trainer(tmp_path / "eager2", max_steps=12)
    eager.run()
    straight = _trainer(tmp_path / "straight", max_steps=12, compile="on")
    straight.run()
    assert _close(_weights(straight), _weights(eager), tol=1e-3)

    crashed = _trainer(tmp_path / "resumed", max_steps=12, compile="on", checkpoint_every_s=0.0)
    crashed.objective = CrashAt(crashed.objective, crash_step=7)
    with pytest.raises(RuntimeError, match="simulated crash"):
        crashed.run()
    assert load_checkpoint(str(tmp_path / "resumed" / "checkpoint.pt"))["step"] == 7
    export = tmp_path / "representation" / "pytorch_model.pt"
    resumed = _trainer(tmp_path / "resumed", seed=99, max_steps=12, compile="on", export_path=str(export))
    resumed.run()
    assert resumed.step_count == 12 and resumed.compiler.active
    assert _close(_weights(resumed), _weights(straight), tol=1e-5)
    # The export comes from the eager module that owns the weights: it reproduces the last checkpoint, and every
    # tensor in the archive is a CPU tensor (a plain torch.jit.load with no map_location works).
    assert verify_export_of_run(str(export), str(tmp_path / "resumed")) == 12
    loaded = torch.jit.load(str(export))
    assert all(t.device.type == "cpu" for t in [*loaded.parameters(), *loaded.buffers()])
    assert "torch.compile: first step (compiling) took" in capsys.readouterr().err


def test_compiled_run_rolls_back_a_non_finite_loss(tmp_path, capsys):
    trainer = _trainer(tmp_path / "train", max_steps=100, compile="on", snapshot_every=5, max_rollbacks=2)
    trainer.objective = nan_from(after_calls=12, method="pvae")
    summary = trainer.run()
    err = capsys.readouterr().err
    assert summary["stopped"] == "diverged" and summary["rollbacks"] == 3
    assert err.count("rolling back to step 10") == 2 and "stopping with the last good model (step 10)" in err
    assert trainer.compiler.active, "rollback dropped the compiled model"
    assert load_checkpoint(str(tmp_path / "train" / "checkpoint.pt"))["step"] == 10


def test_a_failing_compile_is_one_line_and_the_run_goes_on_eagerly_with_the_same_numbers(tmp_path, capsys, monkeypatch):
    def broken_compile(model, **kwargs):
        def call(*args, **kw):
            raise RuntimeError("simulated compiler failure\nwith a long traceback")
        return call
    monkeypatch.setattr(compiled_module.torch, "compile", broken_compile)
    failing = _trainer(tmp_path / "failing", max_steps=6, compile="on")
    failing.run()
    eager = _trainer(tmp_path / "eager", max_steps=6)
    eager.run()
    err = capsys.readouterr().err
    assert "torch.compile: RuntimeError: simulated compiler failure; training eagerly" in err
    assert "with a long traceback" not in err
    assert failing.step_count == 6 and not failing.compiler.active
    assert all(torch.equal(a, b) for a, b in zip(_weights(failing).values(), _weights(eager).values()))


def test_a_budget_that_cannot_absorb_a_compile_trains_eagerly_and_meets_its_deadline(tmp_path, capsys):
    export = tmp_path / "representation" / "pytorch_model.pt"
    started = time.monotonic()
    trainer = _trainer(tmp_path / "train", budget_s=8.0, max_steps=10**9, compile="on", export_path=str(export),
                       safety_margin_s=0.5)
    summary = trainer.run()
    assert time.monotonic() - started < 8.0
    assert summary["stopped"] == "budget" and export.exists() and not trainer.compiler.active
    assert "s of budget left cannot absorb a first compile (up to 60 s); training eagerly" in capsys.readouterr().err


def test_the_compile_cache_is_the_kits_unless_the_user_chose_one(monkeypatch, tmp_path):
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir
    monkeypatch.setenv("KIT_COMPILE_CACHE", str(tmp_path / "kit"))
    for before in (None, default_cache_dir()):          # unset, or torch's default filled in by importing dynamo
        if before is None:
            monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
        else:
            monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", before)
        compiled_module._use_kit_cache()
        assert compiled_module.os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "kit")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    compiled_module._use_kit_cache()
    assert compiled_module.os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "mine")
