"""The evaluator on bad input: one clear line naming the fault, exit status 2, nothing written; a failing metric does not
lose the others."""
import os

import pytest
import torch

import evaluate
from evaluate.__main__ import main as cli_main
from test_evaluate import TINY, FactorPixels, Identity, script


class ThreeD(torch.nn.Module):
    def forward(self, x):
        return x[:, 0, :2, :3]


class Float64(torch.nn.Module):
    def forward(self, x):
        return x[:, 0, 0, :3].double()


class NaNs(torch.nn.Module):
    def forward(self, x):
        return x[:, 0, 0, :3] / (x[:, 0, 0, :3] - x[:, 0, 0, :3])


class BatchStatistics(torch.nn.Module):
    def forward(self, x):
        codes = x[:, 0, 0, :3]
        return codes - codes.mean(dim=0, keepdim=True)


@pytest.mark.parametrize("module, fault", [(ThreeD(), "returned shape"), (Float64(), "dtype float64"),
                                           (NaNs(), "NaN or inf"), (BatchStatistics(), "batch sizes")])
def test_faulty_representation_is_one_clear_error(tmp_path, capsys, module, fault):
    model = script(module, tmp_path)
    out = os.path.join(tmp_path, "out")
    with pytest.raises(evaluate.EvaluationError, match=fault):
        evaluate.run(model, FactorPixels(), out, metrics=["mig"], gin_bindings=TINY)
    assert not os.path.exists(out)


def test_file_that_does_not_load(tmp_path, capsys):
    path = os.path.join(tmp_path, "pytorch_model.pt")
    with open(path, "wb") as f:
        f.write(b"not a model")
    out = os.path.join(tmp_path, "out")
    code = cli_main(["--model", path, "--dataset", "mpi3d_sim_toy", "--output", out])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert path in err[0] and "torch.jit.load" in err[0]
    assert not os.path.exists(out)
    code = cli_main(["--model", os.path.join(tmp_path, "missing.pt"), "--dataset", "mpi3d_sim_toy", "--output", out])
    assert code == 2 and "no such file" in capsys.readouterr().err


def test_missing_dataset_says_how_to_get_it(tmp_path, capsys):
    code = cli_main(["--model", script(Identity(), tmp_path), "--dataset", "mpi3d_toy", "--output",
                     os.path.join(tmp_path, "out"), "--data_dir", os.path.join(tmp_path, "no_data")])
    err = capsys.readouterr().err
    assert code == 2
    assert "mpi3d_toy" in err and "mpi3d_sim" in err


def test_one_failing_metric_keeps_the_others(tmp_path, capsys):
    out = os.path.join(tmp_path, "out")
    # A bad value for SAP only: dlib's LinearSVC cannot train on zero samples.
    report = evaluate.run(script(Identity(), tmp_path), FactorPixels(), out, metrics=["mig", "sap_score", "irs"],
                          gin_bindings=TINY + ["sap_score.num_train = 0"])
    assert set(report["errors"]) == {"sap_score"}
    assert report["scores"]["mig"] > 0.9 and report["scores"]["irs"] > 0.9 and report["scores"]["sap_score"] is None
    assert os.path.isfile(os.path.join(out, "metrics", "mig", "results", "aggregate", "evaluation.json"))
    assert not os.path.exists(os.path.join(out, "metrics", "sap_score"))


def test_bad_gin_binding_is_caught_before_writing(tmp_path):
    out = os.path.join(tmp_path, "out")
    with pytest.raises(evaluate.EvaluationError, match="gin settings"):
        evaluate.run(script(Identity(), tmp_path), FactorPixels(), out, metrics=["mig"],
                     gin_bindings=["mig.no_such_setting = 3"])
    assert not os.path.exists(out)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: --device cuda is accepted here")
def test_cuda_asked_without_a_gpu_is_one_line(tmp_path, capsys):
    out = os.path.join(tmp_path, "out")
    code = cli_main(["--model", script(Identity(), tmp_path), "--dataset", "mpi3d_sim_toy", "--output", out,
                     "--device", "cuda"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--device cuda" in err[0] and "no CUDA device" in err[0]
    assert not os.path.exists(out)
    with pytest.raises(evaluate.EvaluationError, match="expected cpu, cuda or cuda:N"):
        evaluate.run(script(Identity(), tmp_path), FactorPixels(), out, metrics=["mig"], device="tpu")


def test_exact_and_reference_together_are_refused_before_writing(tmp_path, capsys):
    out = os.path.join(tmp_path, "out")
    assert cli_main(["--model", script(Identity(), tmp_path), "--dataset", "mpi3d_sim_toy", "--output", out,
                     "--exact", "--reference"]) == 2
    assert capsys.readouterr().err.strip() == ("error: --reference and --exact: expected one of them (the reference "
                                               "path is exact by definition)")
    assert not os.path.exists(out)
