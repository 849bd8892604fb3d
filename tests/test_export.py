"""Export: the TorchScript file round-trips, runs on the CPU at the evaluator's batch sizes, and a bad export is refused."""
import pytest
import torch

from submission.export import ExportError, export_representation, verify_export
from submission.models import make_model


@pytest.mark.parametrize("kind", ["vae", "pvae"])
def test_export_round_trips(tmp_path, kind):
    torch.manual_seed(0)
    model = make_model(kind=kind, architecture="higgins", latent_dim=6).to(memory_format=torch.channels_last)
    model.train()
    path = tmp_path / "representation" / "pytorch_model.pt"
    export_representation(model, str(path))
    assert model.training                                  # the caller's mode is left alone
    loaded = torch.jit.load(str(path), map_location="cpu")
    for n in (1, 16, 64):
        x = torch.rand(n, 3, 64, 64)
        with torch.no_grad():
            got = loaded(x)
            assert got.dtype == torch.float32 and got.shape == (n, 6)
            assert torch.allclose(got, model.representation(x), atol=1e-5)
            assert torch.allclose(loaded(x.double()), got)      # float64 input is cast, as the evaluator may send
    assert list(tmp_path.joinpath("representation").iterdir()) == [path]    # no temporary file left


def test_a_mismatching_export_is_refused_and_the_old_one_kept(tmp_path):
    torch.manual_seed(0)
    good, other = make_model(kind="vae", architecture="mlp", latent_dim=3), make_model(kind="vae", architecture="mlp",
                                                                                       latent_dim=3)
    path = tmp_path / "pytorch_model.pt"
    export_representation(good, str(path))
    with pytest.raises(ExportError, match="differs"):
        verify_export(str(path), other)
    verify_export(str(path), good)
