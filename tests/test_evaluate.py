"""The local evaluator on known representations: identity near 1, noise near chance, exact == reference, the fast
mode's recorded departure from dlib's batching, the layout.

The dataset is a tiny procedural one: each image writes its factors into the first pixels (like dlib's identity-observation
test data, but as images, so that the representation is a real TorchScript module called the challenge's way).
"""
import json
import os

import numpy as np
import pytest
import torch
from disentanglement_lib.data.ground_truth.ground_truth_data import GroundTruthData

import evaluate
from evaluate.__main__ import main as cli_main

FACTOR_SIZES = (4, 5, 6)
# Small samples keep the whole file fast; these are NOT the leaderboard's settings (those are evaluate/configs/*.gin).
TINY = ["factor_vae_score.num_variance_estimate = 640", "factor_vae_score.num_train = 150",
        "factor_vae_score.num_eval = 100", "factor_vae_score.batch_size = 16",
        "dci.num_train = 600", "dci.num_test = 300", "sap_score.num_train = 600", "sap_score.num_test = 300",
        "mig.num_train = 1000", "irs.num_train = 1000",
        "beta_vae_sklearn.num_train = 100", "beta_vae_sklearn.num_eval = 50", "beta_vae_sklearn.batch_size = 16"]


class FactorPixels(GroundTruthData):
    """Factors written into the first pixels of a 64x64x3 image: pixel (0, j, 0) = factor_j / (size_j - 1)."""

    name = "factor_pixels"

    def __init__(self, factor_sizes=FACTOR_SIZES):
        self.factor_sizes = tuple(factor_sizes)

    @property
    def num_factors(self):
        return len(self.factor_sizes)

    @property
    def factors_num_values(self):
        return list(self.factor_sizes)

    @property
    def observation_shape(self):
        return [64, 64, 3]

    def sample_factors(self, num, random_state):
        return np.stack([random_state.randint(s, size=num) for s in self.factor_sizes], axis=1).astype(np.int64)

    def sample_observations_from_factors(self, factors, random_state):
        images = np.zeros((len(factors), 64, 64, 3), np.float32)
        images[:, 0, :self.num_factors, 0] = factors / (np.asarray(self.factor_sizes, np.float32) - 1)
        images[:, 8:, 8:, 1] = 0.5  # something for a conv net to look at besides the factor pixels
        return images


class Identity(torch.nn.Module):
    """The true factors, read back from the pixels: the ideal representation."""

    def __init__(self, factor_sizes=FACTOR_SIZES):
        super().__init__()
        self.register_buffer("scale", torch.tensor(factor_sizes, dtype=torch.float32) - 1)

    def forward(self, x):
        return x[:, 0, 0, :self.scale.shape[0]] * self.scale


class HashCode(torch.nn.Module):
    """A code with no relation to the factors: an integer hash of each image's factor tuple, one per dimension."""

    def __init__(self, factor_sizes=FACTOR_SIZES, num_codes=4):
        super().__init__()
        self.register_buffer("scale", torch.tensor(factor_sizes, dtype=torch.float32) - 1)
        strides = np.concatenate([np.cumprod(factor_sizes[::-1])[::-1][1:], [1]])
        self.register_buffer("strides", torch.tensor(strides, dtype=torch.int64))
        self.register_buffer("salt", torch.arange(1, num_codes + 1, dtype=torch.int64) * 0x9E3779B1)

    def forward(self, x):
        factors = torch.round(x[:, 0, 0, :self.scale.shape[0]] * self.scale).long()
        h = (factors * self.strides).sum(dim=1, keepdim=True) + 1 + self.salt
        for _ in range(3):
            h = (h ^ (h >> 15)) * 0x2C1B3C6D
            h = h & 0xFFFFFFFF
        return (h % 1048576).float() / 1048576.0


class SmallConv(torch.nn.Module):
    """A random conv net, like an untrained encoder: continuous codes, sensitive to float rounding."""

    def __init__(self, num_codes=5):
        super().__init__()
        torch.manual_seed(0)
        self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 4, 2, 1), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 4, 4),
                                        torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8 * 8 * 8, num_codes))

    def forward(self, x):
        # The factor pixels matter: amplify them so the codes carry the factors, entangled.
        return self.body(x) + 3.0 * x[:, 0, 0, :3] @ torch.tensor([[1.0, 0.5, 0.0, 0.2, 0.1], [0.0, 1.0, 0.3, 0.0, 0.4],
                                                                   [0.3, 0.0, 1.0, 0.6, 0.0]])


def script(module, tmp_path, name="pytorch_model.pt"):
    path = os.path.join(tmp_path, name)
    torch.jit.save(torch.jit.script(module.eval()), path)
    return path


def evaluate_tiny(model, tmp_path, metrics=("factor_vae_metric", "dci", "mig", "irs"), reference=False, name="out"):
    return evaluate.run(script(model, tmp_path, f"{name}.pt"), FactorPixels(), os.path.join(tmp_path, name),
                        metrics=list(metrics), reference=reference, gin_bindings=TINY, jobs=2)


def test_identity_scores_near_one(tmp_path):
    report = evaluate_tiny(Identity(), tmp_path)
    assert report["errors"] == {}
    assert report["info"]["device"] == "cpu" and "device_note" not in report["info"]  # the reference's device
    scores = report["scores"]
    assert scores["mig"] > 0.9
    assert scores["dci"] > 0.9
    assert scores["factor_vae_metric"] > 0.95
    assert scores["irs"] > 0.9


def test_hash_code_scores_near_chance(tmp_path):
    scores = evaluate_tiny(HashCode(), tmp_path)["scores"]
    # MIG: the gap between two codes that both carry (almost) nothing about any factor.
    assert scores["mig"] < 0.1
    # DCI: importance spread over all codes for every factor (1 would be one code per factor).
    assert scores["dci"] < 0.3
    # FactorVAE: 3 factors; a majority-vote classifier on uninformative votes stays far from 1.
    assert scores["factor_vae_metric"] < 0.7


def _dlib_results(report):
    return {m: {k: v for k, v in r.items() if k not in ("elapsed_time", "uuid")} for m, r in report["results"].items()}


def _equal(a, b):
    return a.keys() == b.keys() and all(np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in a)


class SizeNoise(Identity):
    """The ideal code plus 1e-7 per image in the batch: codes differ between batch sizes by float noise, on every CPU,
    but each depends only on its image and the batch's size."""

    def forward(self, x):
        return x[:, 0, 0, :self.scale.shape[0]] * self.scale + 1e-7 * x.shape[0]


class PositionNoise(Identity):
    """The ideal code plus 1e-7 times the row's position in the batch (like a kernel that treats a batch's last rows
    apart): a code depends on where its image sits in the batch."""

    def forward(self, x):
        position = torch.arange(x.shape[0], dtype=torch.float32, device=x.device).unsqueeze(1)
        return x[:, 0, 0, :self.scale.shape[0]] * self.scale + 1e-7 * position


class NeighbourNoise(Identity):
    """The ideal code plus 1e-7 times the batch's mean pixel: a code depends, by float noise, on the other images."""

    def forward(self, x):
        return x[:, 0, 0, :self.scale.shape[0]] * self.scale + 1e-7 * x[:, 0, 0, :3].mean()


# FactorVAE and BetaVAE at their challenge batch size (64), the others at 16: both of dlib's sizes, and remainders.
TWO_SIZES = TINY + ["factor_vae_score.batch_size = 64", "beta_vae_sklearn.batch_size = 64"]


def _exact_and_reference(model, tmp_path, monkeypatch, bindings=TWO_SIZES):
    """Both modes on all of dlib's metrics; also every answer the exact mode gave, to be recomputed the way dlib calls."""
    from evaluate import parallel_dci, replay
    monkeypatch.setattr(parallel_dci, "MIN_PARALLEL_WORK", 0)  # DCI's fits in worker processes even on this small problem
    answers = []
    serve = replay.ServedRepresentation.__call__

    def recording(self, keys):
        codes = serve(self, keys)
        answers.append((self, np.array(keys), codes))
        return codes

    monkeypatch.setattr(replay.ServedRepresentation, "__call__", recording)
    metrics = list(evaluate.METRIC_NAMES)
    path = script(model, tmp_path, "model.pt")
    fast = evaluate.run(path, FactorPixels(), os.path.join(tmp_path, "exact"), metrics=metrics, gin_bindings=bindings,
                        jobs=2, exact=True)
    reference = evaluate.run(path, FactorPixels(), os.path.join(tmp_path, "reference"), metrics=metrics,
                             gin_bindings=bindings, reference=True, jobs=2)
    assert fast["info"]["mode"] == "exact" and reference["info"]["mode"] == "reference"
    assert fast["errors"] == {} and reference["errors"] == {}
    fast_results, reference_results = _dlib_results(fast), _dlib_results(reference)
    assert set(fast_results) == set(metrics)
    for metric in metrics:
        assert _equal(fast_results[metric], reference_results[metric]), metric
    # Every request was answered with the very bits dlib's own call would have given.
    for served, keys, codes in answers:
        assert np.array_equal(codes, served.represent(served.keyed.images(keys)))
    assert sum(len(keys) for _, keys, _ in answers) == fast["info"]["images"]["requested"]
    return fast["info"]["images"]


@pytest.mark.parametrize("model", [SmallConv, Identity], ids=["conv", "identity"])
def test_exact_and_reference_give_identical_results(tmp_path, monkeypatch, model):
    # Which path a real conv net takes depends on the CPU's float kernels; only the outcome is asserted.
    images = _exact_and_reference(model(), tmp_path, monkeypatch)
    served = images["served_from_cache"] + images["computed_ahead"] + images["computed_on_request"]
    assert served == images["requested"]


def _by_size(images):
    return {int(size): row["served"] for size, row in images["batch_sizes"].items()}


def test_codes_that_depend_on_the_batch_size_are_served_per_size(tmp_path, monkeypatch):
    images = _exact_and_reference(SizeNoise(), tmp_path, monkeypatch)
    # 64 equals the bulk batch: served in bulk; 16 gets its own images encoded in batches of 16; the remainders of
    # dlib's loops (8, 12) are too few to batch and are computed request by request.
    assert _by_size(images) == {64: "bulk", 16: "per_size", 8: "exact", 12: "exact"}
    assert set(images["encoded"]) == {"bulk (batches of 64)", "batch size 16"}
    exact = 4 * 8 + 2 * 12
    assert images["computed_ahead"] + images["computed_on_request"] == exact
    assert images["served_from_cache"] == images["requested"] - exact


@pytest.mark.parametrize("model", [PositionNoise, NeighbourNoise], ids=["position", "neighbours"])
def test_codes_that_depend_on_more_than_the_batch_size_are_computed_exactly(tmp_path, monkeypatch, capsys, model):
    images = _exact_and_reference(model(), tmp_path, monkeypatch)
    assert set(_by_size(images).values()) == {"exact"}  # the sampled check failed for 16 and 64
    assert images["served_from_cache"] == 0
    assert "depends on more than the batch size" in capsys.readouterr().err


class ConvPositionNoise(torch.nn.Module):
    """Continuous codes (SmallConv's) plus 1e-6 times the row's position in the batch, as on CPUs whose kernels round by
    a row's position: every code depends on where its image sits."""

    def __init__(self):
        super().__init__()
        self.conv = SmallConv()

    def forward(self, x):
        position = torch.arange(x.shape[0], dtype=torch.float32, device=x.device).unsqueeze(1)
        return self.conv(x) + 1e-6 * position


def _fast_and_exact(model, tmp_path, monkeypatch, exact_in_fast=frozenset()):
    """The default mode (serving ``exact_in_fast`` exactly, every other metric from its one cache) and --exact on all
    of dlib's metrics at both batch sizes; also the requests the fast mode sampled (with their exact codes) and every
    answer it served."""
    from evaluate import parallel_dci, replay, runner
    monkeypatch.setattr(parallel_dci, "MIN_PARALLEL_WORK", 0)
    monkeypatch.setattr(runner, "EXACT_IN_FAST_MODE", frozenset(exact_in_fast))
    sampled, answers = [], {}
    sample, serve = replay.sample_exact, replay.ServedRepresentation.__call__

    def sampling(*args, **kwargs):
        samples = sample(*args, **kwargs)
        sampled.extend(pair for pairs in samples.values() for pair in pairs)
        return samples

    def recording(self, keys):
        codes = serve(self, keys)
        answers.setdefault(np.asarray(keys).tobytes(), codes)
        return codes

    monkeypatch.setattr(replay, "sample_exact", sampling)
    monkeypatch.setattr(replay.ServedRepresentation, "__call__", recording)
    metrics, path = list(evaluate.METRIC_NAMES), script(model, tmp_path, "model.pt")
    fast = evaluate.run(path, FactorPixels(), os.path.join(tmp_path, "fast"), metrics=metrics,
                        gin_bindings=TWO_SIZES, jobs=2)
    monkeypatch.setattr(replay.ServedRepresentation, "__call__", serve)
    exact = evaluate.run(path, FactorPixels(), os.path.join(tmp_path, "exact"), metrics=metrics,
                         gin_bindings=TWO_SIZES, jobs=2, exact=True)
    assert fast["info"]["mode"] == "fast" and fast["errors"] == {} and exact["errors"] == {}
    return fast, exact, sampled, answers


@pytest.mark.parametrize("model", [SizeNoise, PositionNoise, NeighbourNoise, ConvPositionNoise, Identity],
                         ids=["size", "position", "neighbours", "conv-position", "deterministic"])
def test_the_fast_mode_records_its_departure_from_dlibs_batching(tmp_path, monkeypatch, model):
    """Each distinct image is encoded once and every request is served from that cache; the recorded max and median
    |diff| are those between what was served for the sampled requests and their codes computed as dlib batches them,
    and the scores agree with --exact's: identical for codes that do not depend on the batch, close for continuous codes
    that do. (Codes on exact grid values, as the ideal code's, are a worst case: a 1e-6 shift moves whole groups of
    them across MIG's histogram edges.)"""
    fast, exact, sampled, answers = _fast_and_exact(model(), tmp_path, monkeypatch)
    images = fast["info"]["images"]
    assert list(images["encoded"].values()) == [images["distinct"]]        # each distinct image once, in one cache
    assert images["bulk_encoder"] == "inference-optimized copy"            # a TorchScript file on a CPU
    assert images["served_from_cache"] == images["requested"] and images["computed_on_request"] == 0
    differences = np.concatenate([np.abs(answers[request.tobytes()].astype(np.float64) - codes).ravel()
                                  for request, codes in sampled])
    deviation = images["cache_vs_exact"]
    assert deviation["max_abs"] == float(differences.max()) and deviation["median_abs"] == float(np.median(differences))
    assert deviation["codes"] == differences.size and deviation["requests"] == len(sampled)
    assert {len(request) for request, _ in sampled} == {int(size) for size in images["batch_sizes"]}  # every size
    if model is Identity:
        assert deviation["max_abs"] == 0.0 and _equal(_dlib_results(fast)["dci"], _dlib_results(exact)["dci"])
    else:
        assert 1e-7 <= deviation["max_abs"] <= 1e-6 * 64 + 1e-5    # the noise the model adds, no more
    if model is SizeNoise:   # the bulk batches are whole (padded): 1e-7 x (64 - the smallest of dlib's sizes, 8)
        assert deviation["max_abs"] == pytest.approx(1e-7 * (64 - 8), abs=1e-6)
    if model is Identity:
        assert all(fast["scores"][m] == exact["scores"][m] for m in evaluate.LEADERBOARD), (fast["scores"], exact["scores"])
    if model is ConvPositionNoise:   # DCI's trees can move far more (see the next test); the others stay close
        for metric in ("factor_vae_metric", "sap_score", "mig", "irs"):
            assert fast["scores"][metric] == pytest.approx(exact["scores"][metric], abs=1e-3), metric
    from evaluate.table import format_table
    assert "max |diff|" in format_table(fast["info"])


def test_the_fast_mode_serves_its_exact_metrics_as_exact_does(tmp_path, monkeypatch):
    """Metrics in EXACT_IN_FAST_MODE get --exact's very results in the fast mode, even where codes depend on a row's
    position in the batch (where DCI's trees move by far more than float noise); the rest come from the one cache."""
    from evaluate.runner import EXACT_IN_FAST_MODE
    chosen = EXACT_IN_FAST_MODE or {"dci"}     # the mechanism is tested even if the shipped set were empty
    fast, exact, sampled, _ = _fast_and_exact(ConvPositionNoise(), tmp_path, monkeypatch, exact_in_fast=chosen)
    images = fast["info"]["images"]
    assert images["served_exactly"] == [m for m in evaluate.METRIC_NAMES if m in chosen]
    assert set(images["served_from_bulk"]) == set(evaluate.METRIC_NAMES) - set(chosen)
    fast_results, exact_results = _dlib_results(fast), _dlib_results(exact)
    for metric in chosen:
        assert _equal(fast_results[metric], exact_results[metric]), metric
    assert sampled and images["cache_vs_exact"]["max_abs"] > 0


class NaNAfter(torch.nn.Module):
    """The ideal code until ``calls`` batches have been encoded, then NaN: a fault found mid-run."""

    def __init__(self, calls):
        super().__init__()
        self.inner, self.left = Identity(), calls

    def forward(self, x):
        self.left -= 1
        codes = self.inner(x)
        return codes if self.left >= 0 else codes * float("nan")


@pytest.mark.parametrize("mode", ["fast", "exact", "reference"])
@pytest.mark.parametrize("fails", [False, True], ids=["returns", "raises"])
def test_the_process_state_is_put_back(tmp_path, mode, fails):
    """numpy's global RNG, dlib's swappable attributes and torch's thread count are as they were after a run, whether
    it returns or raises."""
    from evaluate.process_state import snapshot
    np.random.seed(1234)
    np.random.rand(3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        before = snapshot()
        model = NaNAfter(20) if fails else script(Identity(), tmp_path)   # past the input check, mid-run
        call = lambda: evaluate.run(model, FactorPixels(), os.path.join(tmp_path, "out"),  # noqa: E731
                                    metrics=["dci", "sap_score", "mig"], gin_bindings=TINY, jobs=2,
                                    reference=mode == "reference", exact=mode == "exact")
        if fails:
            with pytest.raises(evaluate.EvaluationError, match="NaN"):
                call()
        else:
            assert call()["errors"] == {}
        after = snapshot()
    finally:
        torch.set_num_threads(threads)
    assert after["torch_threads"] == before["torch_threads"] == 1
    assert after["dlib"] == before["dlib"]
    rng_before, rng_after = before["numpy_rng"], after["numpy_rng"]
    assert rng_before[0] == rng_after[0] and np.array_equal(rng_before[1], rng_after[1]) and \
        tuple(rng_before[2:]) == tuple(rng_after[2:])


def test_the_bulk_pass_runs_only_when_its_codes_are_used(tmp_path, monkeypatch):
    from evaluate import replay
    labels = []
    encode = replay.encode_keys

    def spy(keyed, represent, keys, batch_size, share, label="encoding", **kwargs):
        labels.append((label, len(keys)))
        return encode(keyed, represent, keys, batch_size, share, label=label, **kwargs)

    monkeypatch.setattr(replay, "encode_keys", spy)
    report = evaluate.run(script(SizeNoise(), tmp_path), FactorPixels(), os.path.join(tmp_path, "out"),
                          metrics=["mig", "irs"], gin_bindings=TINY, jobs=2, exact=True)
    assert report["info"]["images"]["encoded"] == {"batch size 16": report["info"]["images"]["encoded"]["batch size 16"]}
    # Besides the probe's few images, nothing went through batches of 64.
    assert [label for label, _ in labels if not label.startswith("probing")] == ["encoding: batch size 16"]
    assert sum(n for label, n in labels if label.startswith("probing")) <= 16 * 16


def test_parallel_boosted_trees_equal_dlibs_loop():
    from disentanglement_lib.evaluation.metrics import dci
    from evaluate import parallel_dci
    rs = np.random.RandomState(0)
    factors = np.stack([rs.randint(k, size=400) for k in (2, 3, 5)])
    codes = factors[[0, 1, 2, 0]].astype(np.float32)  # code 3 duplicates code 0: ties that the global RNG breaks
    args = (codes, factors, codes[:, :200], factors[:, :200])
    np.random.seed(0)
    sequential = dci.compute_importance_gbt(*args)
    sequential_state = np.random.get_state()
    np.random.seed(0)
    parallel = parallel_dci.ParallelImportanceGbt(jobs=2, min_work=0)(*args)
    assert np.array_equal(sequential[0], parallel[0]) and sequential[1:] == parallel[1:]
    assert parallel_dci._same_state(sequential_state, np.random.get_state())  # left where dlib's loop leaves it
    np.random.seed(1)  # the check can fail: another RNG state breaks the ties differently
    assert not np.array_equal(dci.compute_importance_gbt(*args)[0], sequential[0])


def test_fits_and_encoder_share_the_cores():
    """The fits never take more slots than allowed while the encoder runs; the encoder takes the cores fits leave."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor
    from evaluate.encoding import CpuShare
    from evaluate.parallel_dci import ParallelImportanceGbt
    running, most, lock = [0], [0], threading.Lock()

    def fit(i):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return i

    gbt = ParallelImportanceGbt(jobs=4, slots=lambda: 2)
    with ThreadPoolExecutor(4) as pool:  # a stand-in for the worker processes
        assert gbt._submit_as_slots_allow(pool, [(fit, (i,)) for i in range(6)]) == list(range(6))
    assert most[0] == 2 and gbt.submitted.is_set() and gbt.busy() == 0
    share = CpuShare(4, busy=lambda: 3)
    assert share.threads() == 1 and CpuShare(4).threads() == 4 and CpuShare(2, lambda: 5).threads() == 1


def test_output_layout_and_keys_match_the_challenge(tmp_path):
    out = os.path.join(tmp_path, "run")
    code = cli_main(["--model", script(Identity(), tmp_path), "--dataset", "factor_pixels_unused", "--output", out])
    assert code == 2  # an unknown dataset name: bad input
    assert not os.path.exists(out)
    report = evaluate.run(script(Identity(), tmp_path), FactorPixels(), out, gin_bindings=TINY, jobs=1)
    leaderboard = {"factor_vae_metric": "eval_accuracy", "dci": "disentanglement", "sap_score": "SAP_score",
                   "mig": "discrete_mig", "irs": "IRS"}
    with open(os.path.join(out, "scores.json")) as f:
        scores = json.load(f)
    assert set(scores) - {"extras"} == set(leaderboard)
    assert {"infom", "infoe", "infoc", "mic"} <= set(scores["extras"])           # never among the five
    for metric, key in leaderboard.items():
        with open(os.path.join(out, "metrics", metric, "results", "aggregate", "evaluation.json")) as f:
            aggregate = json.load(f)
        assert aggregate[f"evaluation_results.{key}"] == scores[metric] == report["scores"][metric]
        assert aggregate["evaluation_config.evaluation.random_seed"] == "0"
        assert os.path.isfile(os.path.join(out, "metrics", metric, "results", "gin", "evaluation.gin"))
    assert not [n for n in os.listdir(os.path.join(out, "metrics")) if n.startswith(".")]  # no staging left
    assert report["info"]["standin_version"] is None                  # a dataset of its own, no stand-in


def test_report_says_when_codes_came_from_another_device():
    from evaluate.table import format_table
    info = {"model": "m.pt", "dataset": "d", "mode": "fast", "settings": "challenge", "total_s": 1.0, "metrics": {},
            "device": "cpu"}
    assert "NOTE" not in format_table(info)
    info.update(device="cuda:0 (GPU)", device_note="codes computed on cuda:0 (GPU), not on the CPU like the reference")
    assert format_table(info).splitlines()[1] == f"NOTE: {info['device_note']}"


def test_the_report_names_the_stand_in_version_and_labels_records_made_before_versions():
    from evaluate.table import format_table
    info = {"model": "m.pt", "dataset": "mpi3d_sim_toy", "mode": "fast", "settings": "challenge", "total_s": 1.0,
            "metrics": {}, "device": "cpu", "standin_version": 2}
    assert format_table(info).startswith("m.pt on mpi3d_sim_toy (stand-in v2): ")
    del info["standin_version"]                                      # an evaluation_run.json from before versions
    assert format_table(info).startswith("m.pt on mpi3d_sim_toy (stand-in v1): ")
    info.update(dataset="mpi3d_toy", standin_version=None)           # a dataset file: no stand-in
    assert format_table(info).startswith("m.pt on mpi3d_toy: ")


def test_challenge_settings_are_the_default():
    import gin
    from evaluate.metrics import import_dlib_metrics, metric_config
    import_dlib_metrics()
    expected = {"factor_vae_metric": {"factor_vae_score.num_train": 10000, "factor_vae_score.num_eval": 5000,
                                      "factor_vae_score.num_variance_estimate": 10000, "factor_vae_score.batch_size": 64,
                                      "prune_dims.threshold": 0.05},
                "dci": {"dci.num_train": 10000, "dci.num_test": 5000, "dci.batch_size": 16},
                "sap_score": {"sap_score.num_train": 10000, "sap_score.num_test": 5000, "sap_score.batch_size": 16,
                              "sap_score.continuous_factors": False},
                "mig": {"mig.num_train": 10000, "mig.batch_size": 16, "discretizer.num_bins": 20},
                "irs": {"irs.num_train": 10000, "irs.batch_size": 16, "irs.diff_quantile": 0.99,
                        "discretizer.num_bins": 20}}
    for metric, bindings in expected.items():
        with metric_config(metric):
            assert gin.query_parameter("evaluation.random_seed") == 0
            for name, value in bindings.items():
                assert gin.query_parameter(name) == value, (metric, name)
    with metric_config("dci"):  # one metric's settings never leak into the next one's scope
        with pytest.raises(ValueError):
            gin.query_parameter("discretizer.num_bins")


@pytest.mark.slow
def test_fast_equals_reference_on_the_procedural_mpi3d(tmp_path):
    """The challenge's default encoder (random weights, rescaled) on mpi3d_sim_toy: every dlib results dict identical."""
    data = pytest.importorskip("submission.data")
    models = pytest.importorskip("submission.models")
    dataset = data.get_dataset("mpi3d_sim_toy")
    torch.manual_seed(0)
    model = models.build_model(dict(kind="vae", architecture="higgins", latent_dim=6, channels=3)).eval()

    class UnitSpread(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            return self.model.representation(x) * 1000.0  # fresh weights give tiny means; FactorVAE would prune them

    path = os.path.join(tmp_path, "pytorch_model.pt")
    torch.jit.save(torch.jit.trace(UnitSpread(model).eval(), torch.rand(16, 3, 64, 64)), path)
    metrics = list(evaluate.METRIC_NAMES)
    bindings = ["factor_vae_score.num_variance_estimate = 1000", "factor_vae_score.num_train = 200",
                "factor_vae_score.num_eval = 100", "dci.num_train = 1000", "dci.num_test = 500",
                "sap_score.num_train = 1000", "sap_score.num_test = 500", "mig.num_train = 2000", "irs.num_train = 2000",
                "beta_vae_sklearn.num_train = 100", "beta_vae_sklearn.num_eval = 50"]
    fast = evaluate.run(path, dataset, os.path.join(tmp_path, "fast"), metrics=metrics, gin_bindings=bindings)
    reference = evaluate.run(path, dataset, os.path.join(tmp_path, "ref"), metrics=metrics, gin_bindings=bindings,
                             reference=True)
    assert fast["errors"] == {} and reference["errors"] == {}
    assert fast["results"]["factor_vae_metric"]["num_active_dims"] > 0
    fast_results, reference_results = _dlib_results(fast), _dlib_results(reference)
    for metric in metrics:
        assert _equal(fast_results[metric], reference_results[metric]), metric
    assert fast["info"]["standin_version"] == 2                       # the stand-in's arm turns about its base
    with open(os.path.join(tmp_path, "fast", "evaluation_run.json")) as f:
        assert json.load(f)["standin_version"] == 2


def test_codes_own_their_memory():
    """A view would keep each output tensor alive; thousands of them fragmented the heap past 20 GB in a full run."""
    import torch
    from evaluate.representation import representation_function

    class Halves(torch.nn.Module):
        def forward(self, x):
            return x.flatten(1)[:, :4] * 2.0

    codes = representation_function(torch.jit.script(Halves()))(np.random.rand(3, 64, 64, 3).astype(np.float32))
    assert codes.flags.owndata and codes.shape == (3, 4)
