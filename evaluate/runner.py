"""``evaluate.run``: score one representation on one dataset with dlib's metrics; write the challenge's layout.

Three modes, one sampling (dlib's own, replayed: see :mod:`evaluate.replay`):

* **fast** (default): each distinct image encoded once, in bulk (by an inference-optimized copy of the model), every
  request answered from that cache, DCI's fits in parallel beside the encoding; how far the cached codes are from
  dlib's batching (max and median |Δ| on sampled requests) is measured before scoring and recorded. The metrics of
  ``EXACT_IN_FAST_MODE`` (DCI) are still served as in the exact mode;
* **exact** (``--exact``): as fast, but every code bit for bit what dlib's batching gives on this CPU (per batch size:
  served in bulk, encoded at that size, or computed on request exactly as dlib batches it);
* **reference** (``--reference``): dlib's metric functions called the plain way, as the challenge's evaluator did: the
  kit's dataset, the representation called at dlib's batch sizes, one metric after another, everything in one process.

Either way, each metric's results dict is dlib's own, saved with dlib's own writer under
``<output>/metrics/<metric>/results/``; the five leaderboard numbers go to ``<output>/scores.json``.
"""
import functools
import os
import threading
import time

import numpy as np
import torch

from evaluate import extra
from evaluate import metrics as metric_registry
from evaluate.errors import EvaluationError
from submission.files import JobLayout, atomic_write_json, first_line as _first_line, write_scores
from evaluate.metrics import (DEFAULT_METRICS, EXTRA, LEADERBOARD, SCORE_KEYS, SELECTABLE, evaluation_settings,
                              metric_config)
from evaluate.process_state import evaluation_state
from evaluate.progress import Progress, log
from evaluate.table import format_number
from evaluate.representation import (check_representation, device_description, inference_optimized, kit_model,
                                     load_representation, representation_function, resolve_device)

# Metrics the fast mode still serves bit for bit as dlib batches them: DCI's boosted trees moved by more than the
# grader's own run-to-run DCI noise (0.0007) when the codes moved by float rounding (bench/bench_evaluate.py on six
# exports; evaluate/README.md). Their requests are few (DCI: 15,000 images), so this costs seconds.
EXACT_IN_FAST_MODE = frozenset({"dci"})

PROCEDURAL_HINT = ("download the file into $DISENTANGLEMENT_LIB_DATA (see README.md), or evaluate on a procedural "
                   "stand-in that needs no file: mpi3d_sim_toy or mpi3d_sim_realistic")


def open_dataset(dataset, data_dir=None):
    """(GroundTruthData, name): a registry name is opened with the kit's own loaders (never dlib's ``named_data``, which
    assumes the challenge-era MPI3D sizes); an object is used as it is."""
    if not isinstance(dataset, str):
        return dataset, getattr(dataset, "name", type(dataset).__name__)
    from submission.data import DatasetError, get_dataset
    try:
        return get_dataset(dataset, data_dir=data_dir), dataset
    except DatasetError as exc:
        message = str(exc)
        if "mpi3d_sim" not in message:
            message = f"{message}; {PROCEDURAL_HINT}"
        raise EvaluationError(message) from None


class _CountingRepresentation:
    """The reference path's representation function, with progress."""

    def __init__(self, represent, progress):
        self.represent, self.progress = represent, progress

    def __call__(self, observations):
        codes = self.represent(observations)
        self.progress.update(len(codes))
        return codes


def _report_progress(run, fraction):
    """Tell the job's progress bar (``run.grader``: (job directory, span, grading), given when evaluating as a
    pipeline stage)."""
    if run.grader is not None:
        try:
            run.events.register_progress(fraction, run.grader[1])
        except Exception:  # the evaluator's results never depend on the progress bar
            pass


class _Run:
    """State of one evaluation: settings, results so far, and the per-metric scoring step shared by both modes."""

    def __init__(self, output_dir, metrics, quick, gin_files, gin_bindings, model=None, grader=None):
        self.output_dir, self.metrics, self.grader = output_dir, metrics, grader
        if grader is not None:
            from aicrowd_helpers import Events
            self.events = Events(grader[0], *grader[2:])
        self.config = dict(quick=quick, gin_files=gin_files, gin_bindings=gin_bindings)
        self.model = model  # the kit model behind a checkpoint (the extra metrics' decoder), or None
        self.results, self.errors, self.seconds = {}, {}, {}

    def score(self, metric, dataset, represent, importance_gbt=None, images=None):
        """Run dlib's metric function in its own gin scope, seeded as the grader seeded it; save dlib's layout.

        ``extra`` runs the same way, and also gets the kit model and ``images`` (the fast path's keys -> images)."""
        start = time.monotonic()
        try:
            with metric_config(metric, **self.config):
                evaluation_fn, seed = evaluation_settings()
                if metric == EXTRA:
                    evaluation_fn = functools.partial(evaluation_fn, model=self.model, images=images)
                # sklearn estimators inside dlib's metrics draw from numpy's global RNG (LinearSVC in SAP, tie-breaking
                # in DCI's trees); seeding it makes every run, fast or reference, repeat the same draws.
                np.random.seed(seed)
                if importance_gbt is not None:  # the fast path's stand-in for DCI's sequential fits
                    from disentanglement_lib.evaluation.metrics import dci
                    from evaluate.process_state import patched  # restored by evaluation_state() in any case
                    with patched(dci, "compute_importance_gbt", importance_gbt):
                        results = evaluation_fn(dataset, represent, random_state=np.random.RandomState(seed))
                else:
                    results = evaluation_fn(dataset, represent, random_state=np.random.RandomState(seed))
                results = dict(results)
                results["elapsed_time"] = time.monotonic() - start
                metric_registry.write_metric_results(self.output_dir, metric, results)
        except EvaluationError:
            raise
        except Exception as exc:
            self.fail(metric, exc)
            return
        self.results[metric] = results
        self.seconds[metric] = round(time.monotonic() - start, 2)
        if metric == EXTRA:
            for group, line in results["errors"].items():
                self.errors[f"{EXTRA}.{group}"] = line
                log(f"{EXTRA}: {group} FAILED: {line} (the other extra metrics are kept)")
            shown = ", ".join(f"{k} = {format_number(results[k])}" for k in extra.SUMMARY if results[k] is not None)
            log(f"{metric}: {shown} ({self.seconds[metric]:.1f} s)")
            return
        log(f"{metric}: {SCORE_KEYS[metric]} = {float(results[SCORE_KEYS[metric]]):.4f} "
            f"({self.seconds[metric]:.1f} s)")

    def fail(self, metric, exc):
        self.errors[metric] = _first_line(exc)
        metric_registry.remove_metric_results(self.output_dir, metric)
        log(f"{metric} FAILED: {self.errors[metric]} (the other metrics go on)")


def _run_reference(run, dataset, represent):
    for i, metric in enumerate(run.metrics):
        with Progress(f"{metric}: encoding") as progress:
            run.score(metric, dataset, _CountingRepresentation(represent, progress))
        _report_progress(run, (i + 1) / len(run.metrics))
    return {}


def _record(run, keyed, num_codes):
    """metric -> the requests (arrays of grid indices) its dlib function makes, in order: each metric run against
    stand-ins, its sampling unchanged, its costly scorers stubbed."""
    from evaluate import replay
    requests = {}
    for metric in run.metrics:
        try:
            with metric_config(metric, **run.config):
                evaluation_fn, seed = evaluation_settings()
                recorder = replay.RequestRecorder(num_codes)
                with replay.scorers_stubbed():
                    evaluation_fn(keyed, recorder, random_state=np.random.RandomState(seed))
            requests[metric] = recorder.requests
        except Exception as exc:
            run.fail(metric, exc)
    return requests


def _beside(background, started, foreground):
    """Run ``background`` on a thread; once ``started`` is set (or it has ended), run ``foreground`` here; wait for both."""
    failure = []

    def target():
        try:
            background()
        except BaseException as exc:  # re-raised here: an EvaluationError must not die with its thread
            failure.append(exc)

    thread = threading.Thread(target=target, name="evaluate-dci")
    thread.start()
    try:
        while not started.wait(0.2) and thread.is_alive():
            pass
        result = foreground()
    finally:
        thread.join()
    if failure:
        raise failure[0]
    return result


def _score_dci_beside_encoding(run, keyed, represent, requests, groups, share):
    """Score DCI (its caches filled) on a thread while this one encodes the other metrics' images; returns what the
    encoder did. While both run, half the cores fit and the others encode; whichever finishes first leaves its cores to
    the other (the encoder takes the cores of finished fits; the fits take all once the encoder is done)."""
    from evaluate import replay
    from evaluate.parallel_dci import ParallelImportanceGbt
    dci = next(group for group in groups if "dci" in group.metrics)
    # Requests no cache serves are computed here, exactly as dlib calls them, before DCI's thread starts: the model then
    # never runs on two threads at once with different torch settings.
    for request in requests["dci"]:
        if len(request) not in dci.caches:
            dci.served.exact_ahead[request.tobytes()] = represent(keyed.images(request))
    encoded = threading.Event()
    gbt = ParallelImportanceGbt(jobs=share.cores, own_process=True,
                                slots=lambda: share.cores if encoded.is_set() else max(1, share.cores // 2))

    def encode_rest():
        try:
            done = {}
            for group in groups:
                _add(done, group.fill([r for metric in group.metrics if metric != "dci" for r in requests[metric]],
                                      share))
            return done
        finally:
            encoded.set()

    share.busy = gbt.busy
    try:
        return _beside(lambda: run.score("dci", keyed, dci.served, importance_gbt=gbt, images=keyed.images),
                       gbt.submitted, encode_rest)
    finally:
        share.busy = None


def _add(counts, more):
    for label, count in more.items():
        counts[label] = counts.get(label, 0) + count
    return counts


def _run_replayed(run, dataset, represent, num_codes, batch_size, jobs, exact, bulk_encoder=None):
    """The fast and exact modes: record, encode (DCI's images first), then score every metric from the caches. In the
    fast mode the metrics of ``EXACT_IN_FAST_MODE`` are still served exactly (their requests are few), and the others'
    cache is filled by ``bulk_encoder`` (the model's inference-optimized copy) where there is one."""
    from evaluate import replay
    from evaluate.encoding import CpuShare, available_cpus
    from evaluate.parallel_dci import ParallelImportanceGbt
    keyed = replay.KeyedObservations(dataset)
    start = time.monotonic()
    requests = _record(run, keyed, num_codes)
    all_requests = [r for metric in requests for r in requests[metric]]
    requested = int(sum(len(r) for r in all_requests))
    distinct = len(np.unique(np.concatenate(all_requests))) if all_requests else 0
    record_s = time.monotonic() - start
    log(f"recorded {requested} image requests of {len(requests)} metrics ({distinct} distinct) in {record_s:.1f} s")
    _report_progress(run, 0.05)

    start = time.monotonic()
    cores = jobs or available_cpus()
    share = CpuShare(cores)
    exact_metrics = [m for m in requests if exact or m in EXACT_IN_FAST_MODE]
    groups = [replay.ServingGroup(how, metrics, requests, keyed, represent, batch_size, share,
                                  encoder=bulk_encoder if how == "fast" else None)
              for how, metrics in (("exact", exact_metrics), ("fast", [m for m in requests if m not in exact_metrics]))
              if metrics]
    # DCI's requests are few and its fits are long: encode them first, so that the fits run while the rest is encoded.
    overlap = "dci" in requests and len(requests) > 1
    encoded = {}
    for group in groups:
        first = [r for m in group.metrics if m == "dci" or not overlap for r in requests[m]] + group.sampled()
        _add(encoded, group.fill(first, share))
    deviation = next((d for d in [group.check() for group in groups] if d is not None), None)
    if deviation is not None:
        log(f"cached codes against dlib's batching, on {deviation['requests']} sampled requests "
            f"({deviation['codes']} codes): max |diff| {deviation['max_abs']:.3g}, median {deviation['median_abs']:.3g}")
    first_s = time.monotonic() - start
    _report_progress(run, 0.2)

    if overlap:
        _add(encoded, _score_dci_beside_encoding(run, keyed, represent, requests, groups, share))
    encode_s = time.monotonic() - start
    log(f"encoded {sum(encoded.values())} images ({', '.join(f'{k}: {v}' for k, v in encoded.items()) or 'none'}) in "
        f"{encode_s:.1f} s{' beside DCI' if overlap else ''}")
    _report_progress(run, 0.5)

    importance_gbt = ParallelImportanceGbt(jobs=cores)
    remaining = [metric for metric in requests if not (overlap and metric == "dci")]
    served = {metric: group.served for group in groups for metric in group.metrics}
    for i, metric in enumerate(remaining):
        run.score(metric, keyed, served[metric], importance_gbt=importance_gbt, images=keyed.images)
        _report_progress(run, 0.5 + 0.5 * (i + 1) / len(remaining))
    computed = sum(group.served.computed for group in groups)
    if computed:
        log(f"{computed} images were encoded on request, exactly as dlib batches them")
    plans = {size: how for group in reversed(groups) for size, how in group.plan.items()}   # an exact size wins
    sizes = replay.requests_by_size(all_requests)
    return {"requested": requested, "distinct": int(distinct), "bulk_batch_size": batch_size,
            "bulk_encoder": "inference-optimized copy" if bulk_encoder and not exact else "the model",
            "served_exactly": exact_metrics, "served_from_bulk": [m for m in requests if m not in exact_metrics],
            "batch_sizes": {str(size): {"requests": len(sizes[size]), "served": plans[size]} for size in sorted(plans)},
            "cache_vs_exact": deviation, "encoded": encoded,
            "served_from_cache": int(sum(group.served.served for group in groups)),
            "computed_ahead": int(sum(group.served.served_ahead for group in groups)),
            "computed_on_request": int(computed), "dci_beside_encoding": overlap,
            "record_s": round(record_s, 2), "first_encode_s": round(first_s, 2), "encode_s": round(encode_s, 2)}


def run(model, dataset, output_dir, metrics=None, reference=False, quick=False, gin_files=(), gin_bindings=(),
        batch_size=64, jobs=None, data_dir=None, device="cpu", grader=None, exact=False):
    """Evaluate ``model`` on ``dataset`` with dlib's metrics at the challenge's settings; write into ``output_dir``.

    Args:
      model: path of a TorchScript file or kit checkpoint (or a directory holding ``checkpoint.pt``), or a torch module.
      dataset: a registry name (``submission.data``), or a GroundTruthData object.
      output_dir: gets ``metrics/<metric>/results/aggregate/evaluation.json``, ``scores.json``, ``evaluation_run.json``.
      metrics: metric names (default: the five leaderboard metrics and ``extra``); ``beta_vae_sklearn`` is optional.
        ``extra`` (MIC, active dims, total correlation; with a kit checkpoint also the reconstruction error and the
        aggregate posterior's sampled TC) never enters scores.json.
      reference: call dlib the plain way instead of replaying it (the same sampling; about twice as slow).
      exact: replay, but with every code bit for bit what dlib's batching gives on this CPU (the default answers every
        request from one cache of each distinct image's code, and records how far that is from dlib's batching).
      quick: add ``configs/quick.gin`` (~1/10 of the samples): NOT the leaderboard's settings.
      grader: (job directory, (a, b)) to report progress to the challenge's event log as the [a, b] share of a job.
      gin_files, gin_bindings: more settings, applied after the metric's own (and quick) files.
      batch_size: images per model call in the bulk encoding (64: the fastest for the kit's networks on the CPUs
        measured).
      jobs: cores to use, shared by the encoder's threads and DCI's fit processes (default: the CPUs available).
      data_dir: where file-backed datasets live (default ``$DISENTANGLEMENT_LIB_DATA``).
      device: ``cpu`` (default, like the challenge's CPU reference) or ``cuda``/``cuda:N``: where the model encodes (a
        module passed in is moved there). Codes from a GPU can differ from the CPU's by float rounding; the report says so.

    Returns:
      dict with ``scores`` (the content of scores.json: leaderboard metric -> number, or None when it failed or did not
      run), ``results`` (metric -> dlib's results dict), ``errors`` (metric -> one line; ``extra.<group>`` for one extra
      metric that failed while the others were kept), ``info`` (what evaluation_run.json holds).

    Raises:
      EvaluationError: bad input (model, dataset, metric name, gin setting), before anything is written; or a
      representation fault found mid-run (NaN, wrong shape), which no metric could score.
    """
    total_start = time.monotonic()
    metrics = list(dict.fromkeys(metrics or DEFAULT_METRICS))
    for metric in metrics:
        if metric not in SELECTABLE:
            raise EvaluationError(f"unknown metric {metric!r}; expected some of: {', '.join(SELECTABLE)}")
    if reference and exact:
        raise EvaluationError("--reference and --exact: expected one of them (the reference path is exact by definition)")
    if batch_size < 1:
        raise EvaluationError(f"batch_size={batch_size}; expected a positive integer")
    if jobs is not None and jobs < 1:
        raise EvaluationError(f"--jobs {jobs}: expected a positive number of cores (default: the CPUs available)")
    device = resolve_device(device)
    ds, dataset_name = open_dataset(dataset, data_dir)
    if isinstance(model, torch.nn.Module):
        module, model_name = model.eval(), type(model).__name__
    else:
        module, model_name = load_representation(model), os.fspath(model)
    module = module.to(device)
    represent = representation_function(module, name=model_name, device=device)
    decoder_model = kit_model(module)
    num_codes = check_representation(represent, ds, name=model_name)
    metric_registry.import_dlib_metrics()
    metric_registry.check_configs(metrics, quick, gin_files, gin_bindings)
    try:
        os.makedirs(os.path.join(output_dir, "metrics"), exist_ok=True)
    except OSError as exc:
        raise EvaluationError(f"{output_dir}: cannot create the output directory ({exc.strerror})") from None

    mode = "reference" if reference else "exact" if exact else "fast"
    if mode != "reference":
        from evaluate.replay import check_replayable
        reason = check_replayable(ds)
        if reason:
            log(f"dataset {dataset_name} cannot be replayed ({reason}): using the reference path")
            mode = "reference"
    settings = "quick (NOT the leaderboard's settings)" if quick else "challenge"
    log(f"{model_name} ({num_codes} codes) on {dataset_name}: {mode} mode, {settings} settings, encoding on "
        f"{device_description(device)}, metrics {', '.join(metrics)}")
    bulk_encoder = None
    if mode == "fast":
        optimized = inference_optimized(module, device)
        if optimized is not None:
            bulk_encoder = representation_function(optimized, name=model_name, device=device)
    state = _Run(output_dir, metrics, quick, tuple(gin_files), tuple(gin_bindings), model=decoder_model, grader=grader)
    try:
        with evaluation_state():     # numpy's global RNG, dlib's swapped attributes, torch's threads: put back
            if mode == "reference":
                images = _run_reference(state, ds, represent)
            else:
                images = _run_replayed(state, ds, represent, num_codes, batch_size, jobs, exact=mode == "exact",
                                       bulk_encoder=bulk_encoder)
    except (EvaluationError, KeyboardInterrupt):
        # A representation fault found mid-run, or Ctrl-C: no scores.json, and none of this run's metric results.
        for metric in state.results:
            metric_registry.remove_metric_results(output_dir, metric)
        raise

    scores = {m: (float(state.results[m][SCORE_KEYS[m]]) if m in state.results else None) for m in LEADERBOARD}
    info = {"model": model_name, "dataset": dataset_name, "mode": mode, "settings": "quick" if quick else "challenge",
            "standin_version": getattr(ds, "standin_version", None), "device": device_description(device),
            "gin_files": list(gin_files), "gin_bindings": list(gin_bindings), "num_codes": num_codes,
            "metrics": {m: {"key": f"evaluation_results.{SCORE_KEYS[m]}",
                            "score": float(state.results[m][SCORE_KEYS[m]]) if m in state.results else None,
                            "seconds": state.seconds.get(m), "error": state.errors.get(m)}
                        for m in metrics if m != EXTRA},
            "images": images, "total_s": round(time.monotonic() - total_start, 2)}
    if device.type != "cpu":
        info["device_note"] = (f"codes computed on {info['device']}, not on the CPU like the reference: they can differ "
                               "from a CPU evaluation's by float rounding, and so can the scores")
        log(info["device_note"])
    if EXTRA in metrics:
        info["extra"] = _extra_info(state)
    layout = JobLayout(output_dir)
    write_scores(scores, layout.scores, extras=(info.get("extra") or {}).get("values"))
    atomic_write_json(info, layout.evaluation_run)
    return {"scores": scores, "results": state.results, "errors": state.errors, "info": info}


def _extra_info(state):
    """evaluation_run.json's ``extra``: the extra metrics' headline numbers (null when skipped or failed), and why."""
    results = state.results.get(EXTRA)
    if results is None:
        return {"values": dict.fromkeys(extra.SUMMARY), "skipped": {}, "errors": {},
                "seconds": None, "error": state.errors.get(EXTRA)}
    return {"values": {k: results[k] for k in extra.SUMMARY}, "num_codes": results["num_codes"],
            "num_samples": results["num_samples"], "model_samples": results["model_samples"],
            "skipped": dict(results["skipped"]), "errors": dict(results["errors"]), "seconds": state.seconds.get(EXTRA),
            "error": None}
