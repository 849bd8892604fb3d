"""submission.visualize: traversals, reconstructions, samples, factor responses, curves, metric bars, the HTML report
(checked in headless Chromium when it is installed), TensorBoard logging and the CLI's one-line errors.

The model is the kit's PVAE on the tiny MLP body with its decoder swapped for a "stripe" decoder whose image is known in
closed form: row band d of the image has brightness sigmoid(4 z_d), so a traversal's pixels say which code was decoded.
"""
import base64
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from submission.models import build_model
from submission.visualize import VisualizeError, load_model_file, write_comparison, write_run_report
from submission.visualize import curves, factor_response, traversals
from submission.visualize.sources import ModelView
from submission.visualize.tiles import LABEL_WIDTH, PAD, PRUNED_FRAME

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
D, K = 4, 5


class StripeDecoder(nn.Module):
    """z (N, D) -> logits (N, 3, 64, 64): rows [16 d, 16 d + 16) hold 4 z_d in every channel."""

    def forward(self, z):
        bands = (4.0 * z).repeat_interleave(64 // z.shape[1], dim=1)        # (N, 64)
        return bands[:, None, :, None].expand(-1, 3, -1, 64).contiguous()


def stripe_pvae(pruned=(1,)):
    model = build_model({"kind": "pvae", "architecture": "mlp", "latent_dim": D, "channels": 3})
    model.decoder = StripeDecoder()
    with torch.no_grad():
        model.gate.log_alpha.fill_(10.0)             # gate open: exactly 1
        model.gate.log_alpha[list(pruned)] = -10.0   # gate closed: exactly 0
    return model.eval()


class TinyDataset:
    """Two factors (colour 3, bar position 4); the GroundTruthData calls the report uses, nothing else."""
    name = "tiny"
    factors_num_values = [3, 4]
    factor_names = ["colour", "position"]
    num_factors = 2

    def sample_factors(self, n, random_state):
        return np.stack([random_state.randint(s, size=n) for s in self.factors_num_values], axis=1)

    def images_from_factors(self, factors):
        images = np.zeros((len(factors), 64, 64, 3), np.uint8)
        for i, (colour, position) in enumerate(factors):
            images[i, :, :, colour] = 120
            images[i, :8, 16 * position:16 * position + 16] = 255     # a bar in the top rows only
        return images


def write_run(tmp_path, scores=None, log_lines=None):
    """A fake job directory in the kit's layout: train/log.jsonl, train/config.gin, scores.json."""
    job = tmp_path / "job"
    (job / "train").mkdir(parents=True)
    lines = log_lines if log_lines is not None else [
        json.dumps({"step": s, "lr": 1e-4, "reconstruction": 100.0 / s, "kl": 2.0, "active_dims": D - 1,
                    "kl_per_dim": [0.1 * s, 0.0, 1.0, 2.0]}) for s in (10, 20, 30)]
    (job / "train" / "log.jsonl").write_text("\n".join(lines) + "\n")
    (job / "train" / "config.gin").write_text('model.kind = "pvae"\n')
    if scores is not None:
        (job / "scores.json").write_text(json.dumps(scores))
    return job


def save_checkpoint(model, path, dataset="mpi3d_sim_toy"):
    """The trainer's checkpoint format (format 1: model_config + model state + run info)."""
    torch.save({"format": 1, "step": 1, "model_config": model.config(), "model": model.state_dict(),
                "run": {"dataset": dataset}, "gin_config": "model.kind = 'pvae'"}, path)


# --- traversals -------------------------------------------------------------------------------------------------------

def test_traversal_tiles_decode_the_swept_code_and_gate_it():
    view = ModelView.from_model(stripe_pvae(pruned=(1,)))
    base = np.array([0.5, 0.5, -0.5, 0.0], np.float32)
    values = traversals.traversal_values(K)
    tiles = traversals.latent_traversals(view.decode, base, values, view.gate())
    assert tiles.shape == (D, K, 64, 64, 3) and tiles.dtype == np.uint8
    band = tiles[..., ::16, 0, 0].astype(int)                    # (D rows, K steps, D bands)
    expected = 1 / (1 + np.exp(-4 * values))
    for d in range(D):
        for j in range(D):
            if j == d and d != 1:       # the swept band follows the sweep
                np.testing.assert_allclose(band[d, :, j] / 255, expected, atol=0.01)
            else:                       # other bands keep the base code; the pruned band is gated to z = 0
                code = 0.0 if j == 1 else base[j]
                assert np.all(np.abs(band[d, :, j] / 255 - 1 / (1 + np.exp(-4 * code))) < 0.01)


def test_traversal_grid_is_d_rows_by_k_columns_with_pruned_rows_framed_in_red():
    tiles = np.full((D, K, 64, 64, 3), 128, np.uint8)
    pruned = np.array([False, True, False, True])
    grid = traversals.traversal_grid(tiles, pruned)
    assert grid.shape == (PAD + D * (64 + PAD), LABEL_WIDTH + PAD + K * (64 + PAD), 3)
    frame_column = LABEL_WIDTH + PAD + 64          # the frame between the first and second tiles of every row
    for d in range(D):
        middle = PAD + d * (64 + PAD) + 32
        is_red = tuple(grid[middle, frame_column]) == PRUNED_FRAME
        assert is_red == pruned[d], f"row {d}"
        assert np.all(grid[middle, LABEL_WIDTH + PAD:LABEL_WIDTH + PAD + 64] == 128)


def test_traversal_gif_has_k_frames_with_every_dimension(tmp_path):
    from submission.visualize.output_files import gif_bytes
    tiles = np.random.RandomState(0).randint(0, 255, (D, K, 64, 64, 3)).astype(np.uint8)
    tiles[:] = tiles[:, :1]          # identical frames would be merged by a naive GIF writer
    frames = traversals.traversal_frames(tiles, np.array([False, True, False, False]), columns=2)
    path = tmp_path / "t.gif"
    path.write_bytes(gif_bytes(frames))
    with Image.open(path) as gif:
        assert gif.n_frames == K
        assert gif.size == (PAD + 2 * (64 + PAD), PAD + 2 * (64 + PAD) + 8)


# --- factor response --------------------------------------------------------------------------------------------------

def test_factor_response_finds_which_dimension_codes_which_factor():
    dataset = TinyDataset()
    noise = torch.Generator().manual_seed(0)

    def representation(x):
        colour = x[:, :, 32, 32].argmax(1).float()
        position = x[:, 0, 0, :].argmax(1).float() / 16
        return torch.stack([colour, torch.randn(x.shape[0], generator=noise), position,
                            torch.zeros(x.shape[0])], dim=1)

    result = factor_response.factor_response(representation, dataset, images_per_value=32)
    response = result["response"]
    assert response.shape == (4, 2) and result["factor_names"] == ["colour (3)", "position (4)"]
    assert response[0, 0] > 0.9 and response[2, 1] > 0.9
    assert response[0, 1] < 0.1 and response[2, 0] < 0.1
    assert np.all(response[1] < 0.15) and np.all(response[3] == 0)        # noise, and a dead dimension


# --- curves -----------------------------------------------------------------------------------------------------------

def test_curves_tolerate_missing_keys_and_bad_lines(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text("\n".join([
        json.dumps({"step": 1, "lr": 1e-3, "loss": 5.0, "reconstruction": 4.0, "kl_dim_0": 0.5, "kl_dim_1": 0.1}),
        '{"step": 2, "loss": 4.0',                                                   # cut short by a kill
        json.dumps({"step": 3, "loss": 3.0, "active_dims": 2, "kl_per_dim": [0.7, 0.05]}),
        json.dumps({"event": "finished", "step": 3}),
        json.dumps({"step": 4, "it_per_s": 9.0, "loss": float("nan")})]) + "\n")
    records, skipped = curves.read_log(str(path))
    assert [r["step"] for r in records] == [1, 3, 4] and skipped == 1
    groups = curves.split_series(records)
    assert groups["loss terms"]["loss"] == ([1, 3], [5.0, 3.0])
    assert groups["KL per dimension"]["z0"] == ([1, 3], [0.5, 0.7])
    assert groups["active dimensions"] == {"active_dims": ([3], [2.0])}
    assert groups["learning rate"] == {"lr": ([1], [1e-3])}
    assert "it_per_s" not in groups["loss terms"]
    curves.curves_figure(records)                   # draws without error


# --- the report -------------------------------------------------------------------------------------------------------

def external_references(html):
    """Every src/href/url() target that is not a data: URI, plus any scheme://."""
    targets = re.findall(r'(?:src|href)\s*=\s*["\']([^"\']*)', html) + re.findall(r"url\(([^)]*)\)", html)
    return [t for t in targets if not t.startswith("data:")] + re.findall(r"\b[a-z]+://", html)


def test_run_report_embeds_every_picture_and_nothing_external(tmp_path):
    scores = {"factor_vae_metric": 0.4, "dci": 0.2, "sap_score": 0.05, "mig": 0.1, "irs": 0.6}
    job = write_run(tmp_path, scores)
    path = write_run_report(str(job / "train"), model=stripe_pvae(pruned=(1, 3)), dataset=TinyDataset(), steps=K)
    out = job / "report"                          # beside representation/ and scores.json, not inside train/
    assert path == str(out / "report.html")
    expected = {"traversals.png", "traversals.gif", "reconstructions.png", "prior_samples.png", "factor_response.png",
                "curves.png", "metrics.png", "report.html"}
    assert set(os.listdir(out)) == expected                      # and no temporary files left behind
    html = (out / "report.html").read_text()
    for name in expected - {"report.html"}:
        assert base64.b64encode((out / name).read_bytes()).decode() in html, name
    assert external_references(html) == []
    assert "2 pruned dimension(s)" in html and "factor_vae_metric" in html and "model.kind" in html
    with Image.open(out / "traversals.png") as image:
        grid = np.asarray(image.convert("RGB"))
    assert grid.shape == (PAD + D * (64 + PAD), LABEL_WIDTH + PAD + K * (64 + PAD), 3)
    framed = [tuple(grid[PAD + d * (64 + PAD) + 32, LABEL_WIDTH + PAD + 64]) == PRUNED_FRAME for d in range(D)]
    assert framed == [False, True, False, True]
    with Image.open(out / "traversals.gif") as gif:
        assert gif.n_frames == K


def test_cli_from_checkpoint_and_from_torchscript(tmp_path):
    from submission.export import export_representation
    job = write_run(tmp_path)
    model = build_model({"kind": "pvae", "architecture": "mlp", "latent_dim": D, "channels": 3})
    save_checkpoint(model, str(job / "train" / "checkpoint.pt"))
    export_representation(model, str(job / "representation" / "pytorch_model.pt"))
    env = dict(os.environ, OMP_NUM_THREADS="1", KIT_PROGRESS="plain", KIT_PROGRESS_QUIET_S="0")
    run = subprocess.run([sys.executable, "-m", "submission.visualize", "--run", str(job), "--steps", "3"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == str(job / "report" / "report.html")
    assert {"traversals.png", "reconstructions.png", "factor_response.png"} <= set(os.listdir(job / "report"))
    assert "mpi3d_sim_toy" in (job / "report" / "report.html").read_text()     # the dataset the checkpoint names
    assert "[report] 100%" in run.stderr                                            # plain progress lines, no bar

    bare = subprocess.run([sys.executable, "-m", "submission.visualize", "--run", str(job), "--output",
                           str(tmp_path / "bare"), "--model", str(job / "representation" / "pytorch_model.pt"),
                           "--dataset", "mpi3d_sim_toy"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert bare.returncode == 0, bare.stderr
    files = set(os.listdir(tmp_path / "bare"))
    assert "factor_response.png" in files and "traversals.png" not in files and "prior_samples.png" not in files
    assert "encoder only" in (tmp_path / "bare" / "report.html").read_text()


def test_torchscript_view_refuses_to_decode(tmp_path):
    from submission.export import export_representation
    path = str(tmp_path / "pytorch_model.pt")
    export_representation(stripe_pvae(), path)
    view = load_model_file(path)
    assert not view.has_decoder and view.representation(torch.rand(2, 3, 64, 64)).shape == (2, D)
    with pytest.raises(VisualizeError, match="no decoder"):
        view.decode(torch.zeros(1, D))


def test_compare_writes_grouped_bars_for_every_run(tmp_path):
    a = write_run(tmp_path / "a", {"mig": 0.1, "dci": 0.3})
    b = write_run(tmp_path / "b", {"mig": 0.2, "dci": 0.1, "extra": {"irs": 0.5}})
    path = write_comparison([str(a), str(b)], str(tmp_path / "cmp"))
    html = open(path).read()
    assert sorted(os.listdir(tmp_path / "cmp")) == ["comparison.html", "metrics_comparison.png"]
    assert "extra.irs" in html and html.count("<tr>") == 4 and external_references(html) == []
    with pytest.raises(VisualizeError, match="no scores.json"):
        write_comparison([str(a), str(tmp_path)], str(tmp_path / "cmp2"))


@pytest.mark.parametrize("args, words", [
    (["--run", "/nonexistent/run"], ["/nonexistent/run", "does not exist"]),
    (["--run", "{job}", "--dataset", "mpi3d_imaginary"], ["mpi3d_imaginary"]),
    (["--run", "{job}", "--model", "{job}/train/config.gin"], ["config.gin", "checkpoint"]),
    (["--compare", "{job}"], ["no scores.json"]),
])
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, words):
    from submission.visualize.__main__ import main
    job = write_run(tmp_path)
    args = [a.replace("{job}", str(job)) for a in args]
    code = main([*args, "--output", str(tmp_path / "out")])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "error:" in lines[0], lines
    for word in words:
        assert word in lines[0]
    assert not (tmp_path / "out").exists()


# --- TensorBoard ------------------------------------------------------------------------------------------------------

def test_tensorboard_logger_writes_scalars_and_images(tmp_path):
    pytest.importorskip("tensorboard")
    from submission.visualize import TensorBoardLogger
    board = TensorBoardLogger(str(tmp_path / "tb"))
    assert board.enabled
    board.log_record({"step": 5, "loss": 1.5, "kl_per_dim": [0.1, 0.2], "event": "x", "note": "text"})
    board.log_images(5, stripe_pvae(), torch.rand(4, 3, 64, 64))
    board.close()
    (event_file,) = os.listdir(tmp_path / "tb")
    data = (tmp_path / "tb" / event_file).read_bytes()
    for tag in (b"loss", b"kl_per_dim/1", b"reconstructions", b"traversals"):
        assert tag in data
    assert b"note" not in data


# --- the report in a browser ------------------------------------------------------------------------------------------

CHROMIUM = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(name)), None)


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed")
def test_report_renders_in_headless_chromium(tmp_path):
    job = write_run(tmp_path, {"mig": 0.1, "dci": 0.3})
    path = write_run_report(str(job), model=stripe_pvae(pruned=(1,)), dataset=TinyDataset(), steps=K)
    alone = tmp_path / "alone"                   # the HTML file by itself: the browser finds no PNG beside it
    alone.mkdir()
    path = shutil.copy(path, alone / "report.html")
    shot = tmp_path / "shot.png"
    # The network is closed to be sure the page needs nothing from outside it.
    run = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                          "--disable-background-networking", "--disable-component-update", "--disable-sync",
                          f"--user-data-dir={tmp_path / 'profile'}", "--proxy-server=127.0.0.1:9",
                          "--window-size=1000,1400", "--hide-scrollbars", f"--screenshot={shot}",
                          "file://" + str(path)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and shot.exists(), run.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert pixels.shape[:2] == (1400, 1000) and pixels.std() > 20                       # not blank
    # The traversal grid rendered at its natural size: the exact red of the pruned row's frames (about 2000 pixels for
    # K = 5) is on screen; red text and matplotlib's reds are anti-aliased or another shade, and far fewer.
    red = np.all(np.abs(pixels - np.array(PRUNED_FRAME)) <= 3, axis=-1)
    assert red.sum() > 1000, red.sum()
    assert len(np.unique(pixels.reshape(-1, 3) // 8, axis=0)) > 50


def test_training_hook_never_raises(tmp_path, capsys):
    from submission.visualize import write_training_report
    assert write_training_report(str(tmp_path / "missing"), stripe_pvae(), TinyDataset()) is None
    assert "report: skipped" in capsys.readouterr().err
    job = write_run(tmp_path)
    path = write_training_report(str(job / "train"), stripe_pvae(), TinyDataset())
    assert path == str(job / "report" / "report.html") and os.path.isfile(path)
