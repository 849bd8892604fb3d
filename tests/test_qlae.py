"""QLAE: the quantizer against a brute-force nearest-value snap, the straight-through gradient and both losses against
their closed forms, and the recipe through the trainer, the export and the evaluator."""
import itertools

import numpy as np
import pytest
import torch

from submission.models import build_model
from submission.models.quantized import ScalarCodebooks
from submission.objectives import build_objective


def test_each_dimension_snaps_to_its_own_codebooks_nearest_value():
    torch.manual_seed(0)
    books = ScalarCodebooks(latent_dim=3, values=4)
    with torch.no_grad():
        books.values.copy_(torch.tensor([[-1.0, 0.0, 0.5, 2.0], [0.3, 0.1, -0.2, 0.9], [5.0, -5.0, 1.0, 0.0]]))
    z = torch.randn(50, 3) * 2
    with torch.no_grad():
        quantized, index = books(z)
    values = books.values.detach().numpy()
    for n, d in itertools.product(range(50), range(3)):
        distances = [abs(float(z[n, d]) - v) for v in values[d]]
        best = int(np.argmin(distances))                        # brute force, ties to the lower index
        assert index[n, d] == best and quantized[n, d] == pytest.approx(values[d][best])


def test_the_decoder_sees_the_snapped_code_and_the_losses_are_their_closed_forms():
    torch.manual_seed(1)
    model = build_model(dict(kind="qlae", architecture="mlp", latent_dim=4, channels=3, values_per_latent=5))
    objective = build_objective("qlae")
    x = torch.rand(6, 3, 64, 64)
    out = model(x)
    assert torch.equal(out["z"], out["z_quantized"])                                  # forward: quantized values
    assert torch.equal(model.representation(x), out["mu"])                           # the representation: continuous
    terms = objective(model, x, None, 0)
    diff = out["mu"].detach() - out["z_quantized"].detach()
    expected = 64 * 64 * 3 * 0.01 * float((diff ** 2).mean(1).mean())
    assert float(terms["quantization"].detach()) == pytest.approx(expected, rel=1e-5)
    assert float(terms["commitment"].detach()) == pytest.approx(expected, rel=1e-5)
    # Straight through: the codebooks get gradient only from the quantization term, the encoder's head only from the
    # commitment and reconstruction terms (through z_hat as if it were the identity).
    model.zero_grad()
    terms["quantization"].backward(retain_graph=True)
    assert model.codebooks.values.grad.abs().sum() > 0 and model.head.linear.weight.grad is None
    model.zero_grad()
    terms["commitment"].backward(retain_graph=True)
    assert model.codebooks.values.grad is None or model.codebooks.values.grad.abs().sum() == 0
    assert model.head.linear.weight.grad.abs().sum() > 0
    model.zero_grad()
    terms["reconstruction"].backward()
    assert model.head.linear.weight.grad.abs().sum() > 0                              # the straight-through path


def test_the_recipe_trains_exports_and_evaluates(tmp_path, capsys):
    import evaluate
    from submission import train
    from submission.torchscript_check import check_torchscript
    export = tmp_path / "representation" / "pytorch_model.pt"
    code = train.main(["--gin_file", "submission/configs/qlae.gin", "--dataset", "mpi3d_sim_toy", "--output",
                       str(tmp_path / "train"), "--budget", "120s", "--max_steps", "6", "--export", str(export),
                       "--no_report", "--gin_binding", "model.architecture = 'mlp'",
                       "--gin_binding", "training.batch_size = 8"])
    assert code == 0, capsys.readouterr().err
    check_torchscript(str(export))
    report = evaluate.run(str(export), "mpi3d_sim_toy", str(tmp_path / "eval"), metrics=["mig"], quick=True,
                          gin_bindings=["mig.num_train = 500"], jobs=1)
    assert report["errors"] == {} and report["info"]["num_codes"] == 14 and np.isfinite(report["scores"]["mig"])
    from submission.checkpoints import load_checkpoint
    groups = load_checkpoint(str(tmp_path / "train" / "checkpoint.pt"))["optimizer"]["param_groups"]
    assert {group["weight_decay"] for group in groups} == {0.1}                       # AdamW, the paper's decay
