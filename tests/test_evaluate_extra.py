"""The evaluator's ``extra`` metric (MIC, active dims, total correlation, reconstruction error) on known codes.

Same tiny procedural dataset as test_evaluate.py: each image writes its factors into its first pixels, so the identity
representation is the ideal code and a hash of the factors is noise.
"""
import json
import os

import numpy as np
import pytest
import torch

import evaluate
from evaluate.__main__ import main as cli_main
from test_evaluate import FACTOR_SIZES, TINY, FactorPixels, HashCode, Identity, script

# Small samples keep the file fast; the defaults are in evaluate/configs/extra.gin (10000 images, 1000 via the model).
EXTRA_TINY = ["extra_metrics.num_samples = 1500", "extra_metrics.model_samples = 200"]


class PaddedIdentity(torch.nn.Module):
    """The true factors, then two constant dimensions (a pruned latent): 3 varying of 5."""

    def __init__(self):
        super().__init__()
        self.identity = Identity()

    def forward(self, x):
        factors = self.identity(x)
        return torch.cat([factors, torch.full((x.shape[0], 2), 0.5)], dim=1)


class Mixed(torch.nn.Module):
    """The factors, linearly entangled: every code carries every factor."""

    def __init__(self):
        super().__init__()
        self.identity = Identity()
        self.register_buffer("mix", torch.tensor([[1.0, 1.0, 1.0], [1.0, -1.0, 0.5], [0.5, 1.0, -1.0]]))

    def forward(self, x):
        return self.identity(x) @ self.mix


def extra_of(model, tmp_path, name, reference=False, bindings=()):
    path = model if isinstance(model, str) else script(model, tmp_path, f"{name}.pt")
    report = evaluate.run(path, FactorPixels(), os.path.join(tmp_path, name), metrics=["extra"], reference=reference,
                          gin_bindings=TINY + EXTRA_TINY + list(bindings), jobs=1)
    return report


def _without_run_ids(results):
    return {k: v for k, v in results.items() if k not in ("elapsed_time", "uuid")}


def test_identity_against_noise_and_entangled_codes(tmp_path):
    identity = extra_of(PaddedIdentity(), tmp_path, "identity")
    noise = extra_of(HashCode(), tmp_path, "noise")
    mixed = extra_of(Mixed(), tmp_path, "mixed")
    for report in (identity, noise, mixed):
        assert report["errors"] == {}
    identity, noise, mixed = identity["results"]["extra"], noise["results"]["extra"], mixed["results"]["extra"]
    # Active dims: the varying factors, not the constant padding; the noise varies in all of its 4 dimensions.
    assert identity["active_dims"] == len(FACTOR_SIZES) and identity["num_codes"] == 5
    assert noise["active_dims"] == 4
    # MIC: each factor in one dimension of its own, near 1; noise at or below 0 (what little each code carries is
    # spread over all of them); entangled codes well below the identity.
    assert identity["mic"] > 0.9 and identity["mic_best_group"] == [0, 1, 2]
    assert noise["mic"] < 0.2
    assert mixed["mic"] < identity["mic"] - 0.3
    # Gaussian TC: independent factors give ~0, their linear mixtures a clear dependence.
    assert identity["gaussian_tc"] < 0.01 < 0.1 < mixed["gaussian_tc"]


def test_checkpoint_gets_the_decoder_metrics_and_torchscript_does_not(tmp_path):
    models = pytest.importorskip("submission.models")
    export = pytest.importorskip("submission.export")
    torch.manual_seed(0)
    model = models.build_model(dict(kind="vae", architecture="higgins", latent_dim=4, channels=3)).eval()
    run_dir = os.path.join(tmp_path, "train")
    os.makedirs(run_dir)
    torch.save({"format": 1, "model_config": model.config(), "model": model.state_dict(), "step": 0},
               os.path.join(run_dir, "checkpoint.pt"))
    exported = export.export_representation(model, os.path.join(tmp_path, "representation", "pytorch_model.pt"))

    fast = extra_of(run_dir, tmp_path, "fast")
    reference = extra_of(run_dir, tmp_path, "reference", reference=True)
    scripted = extra_of(exported, tmp_path, "scripted")
    assert fast["errors"] == reference["errors"] == scripted["errors"] == {}
    assert fast["info"]["mode"] == "fast" and reference["info"]["mode"] == "reference"

    # The checkpoint: every metric, the same in both modes, and the zoo's own compute_extra_metrics' numbers.
    got = fast["results"]["extra"]
    assert got["skipped"] == {} and got["model_samples"] == 200
    assert got["reconstruction_nll"] > 0 and 0 < got["reconstruction_mse"] < 1 and np.isfinite(got["sampled_tc"])
    assert json.dumps(_without_run_ids(got), sort_keys=True) == \
        json.dumps(_without_run_ids(reference["results"]["extra"]), sort_keys=True)

    def represent(observations):
        with torch.no_grad():
            return model.representation(torch.from_numpy(np.moveaxis(observations, 3, 1)).float()).numpy()

    zoo = compute_extra_metrics(FactorPixels(), represent, np.random.RandomState(0), num_samples=1500, model=model,
                                model_samples=200)
    for key, value in zoo.items():
        assert np.allclose(got[key], value, rtol=1e-5, atol=1e-7), key

    # The TorchScript export: the metrics of the codes alone; the decoder's are skipped, with the reason, not an error.
    codes_only = scripted["results"]["extra"]
    for key in ("mic", "active_dims", "gaussian_tc"):
        assert np.isclose(codes_only[key], got[key], rtol=1e-4), key
    for key in ("reconstruction_nll", "reconstruction_mse", "sampled_tc"):
        assert codes_only[key] is None
    assert set(codes_only["skipped"]) == {"reconstruction", "sampled_tc"}
    assert "checkpoint" in codes_only["skipped"]["reconstruction"]
    table = evaluate.table.format_table(scripted["info"])
    assert "skipped" in table and "decoder" in table and "FAILED" not in table


def test_one_failing_extra_metric_keeps_the_others(tmp_path, monkeypatch):
    from evaluate import extra

    def broken(codes):
        raise np.linalg.LinAlgError("singular matrix")

    monkeypatch.setattr(extra, "gaussian_total_correlation", broken)
    report = extra_of(Identity(), tmp_path, "out")
    assert report["errors"] == {"extra.gaussian_tc": "LinAlgError: singular matrix"}
    results = report["results"]["extra"]
    assert results["gaussian_tc"] is None and results["errors"] == {"gaussian_tc": "LinAlgError: singular matrix"}
    assert results["mic"] > 0.9 and results["active_dims"] == 3
    with open(os.path.join(tmp_path, "out", "metrics", "extra", "results", "aggregate", "evaluation.json")) as f:
        assert json.load(f)["evaluation_results.mic"] == results["mic"]
    assert "Gaussian TC" in evaluate.table.format_table(report["info"]).split("FAILED")[0]


def test_cli_default_adds_extra_without_touching_the_leaderboard(tmp_path, capsys):
    model = script(Identity(), tmp_path)
    bindings = [a for b in TINY + EXTRA_TINY for a in ("--gin_binding", b)]
    common = ["--model", model, "--dataset", "unused", "--jobs", "1", *bindings]
    # Only leaderboard names: no extra anywhere.
    five = os.path.join(tmp_path, "five")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(evaluate.runner, "open_dataset", lambda dataset, data_dir=None: (FactorPixels(), "factor_pixels"))
        assert cli_main([*common, "--output", five, "--metrics", *evaluate.LEADERBOARD]) == 0
        only_five = capsys.readouterr().out
        default = os.path.join(tmp_path, "default")
        assert cli_main([*common, "--output", default]) == 0
        with_extra = capsys.readouterr().out
    assert not os.path.exists(os.path.join(five, "metrics", "extra")) and "extra metrics" not in only_five

    def load(*parts):
        with open(os.path.join(*parts)) as f:
            return json.load(f)

    # scores.json: the same five numbers with extra on; the extra metrics only under "extras", never among the five.
    scores = load(default, "scores.json")
    extras = scores.pop("extras")
    assert scores == load(five, "scores.json") and set(scores) == set(evaluate.LEADERBOARD)
    assert {"mic", "infom", "infoe", "infoc"} <= set(extras) and not set(extras) & set(evaluate.LEADERBOARD)
    # dlib's layout for extra.
    aggregate = load(default, "metrics", "extra", "results", "aggregate", "evaluation.json")
    for key in ("mic", "active_dims", "gaussian_tc", "reconstruction_nll", "sampled_tc"):
        assert f"evaluation_results.{key}" in aggregate
    assert aggregate["evaluation_results.active_dims"] == 3
    assert aggregate["evaluation_config.evaluation.random_seed"] == "0"
    assert aggregate["evaluation_config.extra_metrics.num_samples"] == "1500"
    assert os.path.isfile(os.path.join(default, "metrics", "extra", "results", "gin", "evaluation.gin"))
    # evaluation_run.json: the numbers, apart from the leaderboard's metrics.
    run_info = load(default, "evaluation_run.json")
    assert set(run_info["metrics"]) == set(evaluate.LEADERBOARD) and "extra" not in load(five, "evaluation_run.json")
    assert run_info["extra"]["values"]["mic"] == aggregate["evaluation_results.mic"]
    assert run_info["extra"]["values"]["reconstruction_nll"] is None
    # The table: leaderboard rows first, the extra ones below them.
    leaderboard_rows, extra_rows = with_extra.split("extra metrics (not on the leaderboard")
    assert all(f"\n{metric} " in leaderboard_rows for metric in evaluate.LEADERBOARD)
    assert "MIC" in extra_rows and "MIC" not in leaderboard_rows and "skipped" in extra_rows


# All the extra metrics at once on one sample: an independent path to the evaluator's numbers, each computed on its own.
def compute_extra_metrics(ground_truth_data, representation_function, random_state, num_samples: int = 10000,
                          batch_size: int = 64, model=None, groups=None, model_samples: int = 1000) -> dict:
    """MIC, active dimensions and Gaussian TC from ``representation_function`` (numpy NHWC floats in [0, 1] -> (N, D),
    dlib's convention); with ``model`` (an nn.Module with ``encode`` and ``decoder``), also the reconstruction error and
    the sampled TC of the aggregate posterior on the first ``model_samples`` inputs (its cost grows as N^2).
    ``random_state``: a np.random.RandomState, as dlib's metrics take. MIC's binned mutual information is a plug-in
    estimate, biased upwards by about (bins - 1)(values - 1) / (2 N) nats: keep N large (dlib's MIG uses 10000).
    The evaluator's ``extra`` metric (evaluate/extra.py) gives the same numbers, each metric computed on its own."""
    from submission.metrics import (active_dimensions, batched, evaluation_mode, gaussian_total_correlation,
                                    mutual_information_concentration, reconstruction_of, sampled_tc_of)
    factors, observations = ground_truth_data.sample(num_samples, random_state)
    codes = batched(representation_function, observations, batch_size)
    scores = {}
    scores.update(mutual_information_concentration(codes, factors, groups))
    scores.update(active_dimensions(codes))
    scores.update(gaussian_total_correlation(codes))
    if model is not None:
        rng = np.random.default_rng(random_state.randint(2 ** 31))
        nchw = np.ascontiguousarray(np.moveaxis(np.asarray(observations[:model_samples], np.float32), -1, 1))
        with evaluation_mode(model) as device:
            scores.update(reconstruction_of(model, nchw, batch_size, device))
            scores.update(sampled_tc_of(model, nchw, rng, batch_size, device))
    return scores
