"""Comparing runs by rank, and evaluating a kit checkpoint as well as its TorchScript export."""
import json
import os

import numpy as np
import pytest
import torch

import evaluate
from evaluate.__main__ import main as cli_main
from test_evaluate import TINY, FactorPixels


def _write_scores(directory, scores):
    os.makedirs(directory)
    with open(os.path.join(directory, "scores.json"), "w") as f:
        json.dump(scores, f)


def test_compare_ranks_each_metric_and_averages(tmp_path, capsys):
    a, b, c = (os.path.join(tmp_path, n) for n in "abc")
    _write_scores(a, {"factor_vae_metric": 0.9, "dci": 0.5, "sap_score": 0.1, "mig": 0.3, "irs": 0.7})
    _write_scores(b, {"factor_vae_metric": 0.8, "dci": 0.6, "sap_score": 0.1, "mig": 0.2, "irs": 0.6})
    _write_scores(c, {"factor_vae_metric": 0.7, "dci": 0.4, "sap_score": 0.05, "mig": None, "irs": 0.5})
    comparison = evaluate.compare([a, b, c])
    assert comparison["ranks"][a] == {"factor_vae_metric": 1, "dci": 2, "sap_score": 1.5, "mig": 1, "irs": 1}
    assert comparison["ranks"][c]["mig"] is None  # a missing score is not ranked
    assert comparison["mean_rank"][a] == pytest.approx(6.5 / 5)
    assert comparison["mean_rank"][c] == pytest.approx(3.0)
    assert cli_main(["compare", a, b, c]) == 0
    out = capsys.readouterr().out
    assert "mean rank" in out and "never published" in out
    assert cli_main(["compare", os.path.join(tmp_path, "nowhere")]) == 2


def test_kit_checkpoint_scores_like_its_export(tmp_path):
    models = pytest.importorskip("submission.models")
    export = pytest.importorskip("submission.export")
    torch.manual_seed(0)
    model = models.build_model(dict(kind="vae", architecture="higgins", latent_dim=4, channels=3)).eval()
    run_dir = os.path.join(tmp_path, "train")
    os.makedirs(run_dir)
    torch.save({"format": 1, "model_config": model.config(), "model": model.state_dict(), "step": 0},
               os.path.join(run_dir, "checkpoint.pt"))
    exported = export.export_representation(model, os.path.join(tmp_path, "representation", "pytorch_model.pt"))
    metrics, bindings = ["mig", "irs"], TINY + ["mig.num_train = 400", "irs.num_train = 400"]
    # --exact: the model as given (the fast mode's inference-optimized copies of a module and of its trace may round
    # differently, which the fast mode measures and records).
    from_checkpoint = evaluate.run(run_dir, FactorPixels(), os.path.join(tmp_path, "a"), metrics=metrics,
                                   gin_bindings=bindings, exact=True)
    from_export = evaluate.run(exported, FactorPixels(), os.path.join(tmp_path, "b"), metrics=metrics,
                               gin_bindings=bindings, exact=True)
    assert from_checkpoint["errors"] == {} and from_checkpoint["info"]["num_codes"] == 4
    for metric in metrics:
        assert np.isclose(from_checkpoint["scores"][metric], from_export["scores"][metric], atol=1e-6)
