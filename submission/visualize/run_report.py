"""A run's pictures and its HTML report: what the trainer writes at the end of training and the CLI on demand.

    write_run_report(run_dir, model=model, dataset=dataset)        # in memory: the end of training
    write_run_report(run_dir, dataset_name="mpi3d_toy")            # from the files: checkpoint or TorchScript

Each picture needs some of: a decoder (checkpoint or in-memory model), a dataset, the log, the scores. What is missing is
left out and the report says why, so a bare TorchScript file still gets its factor-response heatmap, scores and config.
"""
import dataclasses
import datetime
import os
import sys

import numpy as np
import torch

from submission.files import JobLayout, first_line, run_files
from submission.progress import progress

from . import curves, factor_response, html_report, metric_charts, output_files, samples, traversals
from .html_report import Picture, Section
from .sources import ModelView, VisualizeError, load_model_file

REPORT_DIRNAME = "report"
REPORT_NAME = "report.html"


@dataclasses.dataclass
class RunFiles:
    """The files of one run, wherever the layout puts them: ``--run`` may name the job's output directory
    ($AICROWD_OUTPUT_PATH/$AICROWD_EVALUATION_NAME) or its ``train/`` (or ``pretrain/``) directory."""
    run_dir: str
    job_dir: str               # the run_dir, or the job directory around a train/ directory: where report/ goes
    log: str = None
    config: str = None
    checkpoint: str = None
    representation: str = None
    scores: str = None


def find_run_files(run_dir: str) -> RunFiles:
    if not os.path.isdir(run_dir):
        raise VisualizeError(f"run directory {run_dir} does not exist: expected a training output directory")
    run_dir = os.path.abspath(run_dir)
    # The export and the scores of a fine-tuning run sit beside train/, not in it (submission.files.JobLayout).
    job = JobLayout(os.path.dirname(run_dir) if os.path.basename(run_dir) == "train" else run_dir)
    files = run_files(run_dir)
    return RunFiles(run_dir=run_dir, job_dir=job.root, log=files["log"], config=files["config"],
                    checkpoint=files["checkpoint"],
                    representation=job.export if os.path.isfile(job.export) else None,
                    scores=job.scores if os.path.isfile(job.scores) else None)


def load_dataset(name: str, data_dir: str = None):
    from submission.data import DatasetError, get_dataset
    try:
        return get_dataset(name, data_dir=data_dir)
    except DatasetError as exc:
        raise VisualizeError(first_line(exc, typed=False)) from None


def _png(image) -> bytes:
    return output_files.png_bytes(image)


def decoder_pictures(view: ModelView, dataset, steps: int, seed: int, kl=None) -> list:
    """Traversals (grid and GIF), reconstructions and prior samples."""
    pictures = []
    random_state = np.random.RandomState(seed)
    gate = view.gate()
    if dataset is not None:
        factors = dataset.sample_factors(16, random_state)
        images = factor_response.dataset_images(dataset, factors, random_state)
        # The ungated mean: the traversal gates every code once, as the decoder sees it (z = gate * u).
        base = view.posterior(images[:1])["mu"][0].numpy()
        base_note = "around the code of the first reconstructed image"
    else:
        images, base, base_note = None, np.zeros(view.latent_dim, np.float32), "around the zero code (no dataset)"
    tiles = traversals.latent_traversals(view.decode, base, traversals.traversal_values(steps), gate)
    pruned = view.pruned()
    labels = traversals.dimension_labels(pruned, gate, kl)
    pruned_note = f"; {int(pruned.sum())} pruned dimension(s) (gate closed) framed in red" if gate is not None else ""
    pictures.append(Picture("traversals.png", _png(traversals.traversal_grid(tiles, pruned, labels)),
                            f"Latent traversals {base_note}: row d sweeps z_d over [-2, 2] in {steps} steps{pruned_note}"))
    pictures.append(Picture("traversals.gif", output_files.gif_bytes(traversals.traversal_frames(tiles, pruned)),
                            "The same traversals animated: one tile per dimension (z0, z1, ... left to right, top to "
                            "bottom); the strip shows the sweep position"))
    if images is not None:
        pairs = samples.reconstruction_pairs(view, images)
        pictures.append(Picture("reconstructions.png", _png(samples.reconstruction_grid(pairs)),
                                "Inputs (upper row of each pair) and their reconstructions from the deterministic code"))
    prior = "decode(gate * z)" if gate is not None else "decode(z)"
    pictures.append(Picture("prior_samples.png", _png(samples.sample_grid(samples.prior_samples(view, 32, seed))),
                            f"Samples from the prior: {prior}, z ~ N(0, I)"))
    return pictures


def posterior_kl_per_dim(view: ModelView, dataset, seed: int, count: int = 256):
    """KL(q(z_d|x) || N(0, 1)) per dimension, averaged over ``count`` images: the end-of-training value."""
    from submission.objectives.base import gaussian_kl_per_dim
    random_state = np.random.RandomState(seed + 1)
    images = factor_response.dataset_images(dataset, dataset.sample_factors(count, random_state), random_state)
    posterior = view.posterior(images)
    return gaussian_kl_per_dim(posterior["mu"], posterior["logvar"]).numpy()


def model_section(view, dataset, dataset_name, steps: int, seed: int) -> Section:
    section = Section("What the model learnt")
    if view is None:
        section.notes.append("No model found (no checkpoint.pt or representation/pytorch_model.pt in the run, and no "
                             "--model given): traversals, reconstructions, samples and factor responses are unavailable.")
        return section
    kl = posterior_kl_per_dim(view, dataset, seed) if view.has_decoder and dataset is not None else None
    if view.has_decoder:
        section.pictures += decoder_pictures(view, dataset, steps, seed, kl)
    else:
        section.notes.append(f"The model is a {view.source} (encoder only): traversals, reconstructions and prior "
                             f"samples need a decoder, i.e. the run's train/checkpoint.pt.")
    if dataset is None:
        section.notes.append("No dataset (--dataset NAME): reconstructions and factor responses are unavailable.")
        return section
    result = factor_response.factor_response(view.representation, dataset, seed=seed)
    gate = view.gate()
    section.pictures.append(Picture(
        "factor_response.png",
        output_files.figure_png_bytes(factor_response.response_figure(result, view.pruned())),
        f"How each latent dimension responds to each ground-truth factor of {dataset_name} (bias-corrected "
        f"correlation ratio: 1 = the factor alone explains the dimension's spread)", plot=True))
    section.notes.append(captured_note(view, dataset, seed))
    section.table = [["dimension", "std over data"] + (["KL(q(z_d|x) || p(z_d))"] if kl is not None else [])
                     + (["test-time gate"] if gate is not None else [])]
    for d, spread in enumerate(result["latent_std"]):
        section.table.append([f"z{d}", float(spread)] + ([float(kl[d])] if kl is not None else [])
                             + ([float(gate[d])] if gate is not None else []))
    return section


def captured_note(view, dataset, seed: int, num_samples: int = 10000) -> str:
    """Which factors the representation captured (``submission.metrics.factor_capture``: best latent's normalised MI
    >= 0.2, dlib's 20-bin discretisation, 10,000 samples) and which it kept, one code or several
    (``submission.metrics.factor_readout`` >= 0.2 on the same samples), as one paragraph for the report."""
    from submission.metrics import factor_capture, factor_readout
    from submission.metrics.captured import CAPTURE_THRESHOLD
    random_state = np.random.RandomState(seed + 2)
    factors = dataset.sample_factors(num_samples, random_state)
    codes = np.concatenate([view.representation(factor_response.dataset_images(dataset, factors[i:i + 1000],
                                                                               random_state)).numpy()
                            for i in range(0, num_samples, 1000)])        # 1,000 images at a time: 49 MB, not 490
    names = getattr(dataset, "factor_names", None)
    capture = factor_capture(codes, factors, names)
    readout = factor_readout(codes, factors, names)["readout_nmi"]
    detail = ", ".join(f"{name} {nmi:.2f}" for name, nmi in capture["capture_nmi"].items())
    kept = ", ".join(f"{name} {nmi:.2f}" for name, nmi in readout.items())
    spread = [name for name, nmi in readout.items() if nmi >= CAPTURE_THRESHOLD and name not in capture["captured"]]
    dropped = [name for name, nmi in readout.items() if nmi < CAPTURE_THRESHOLD and name not in capture["captured"]]
    return (f"Captured factors (best latent's normalised mutual information >= 0.2 on {num_samples:,} samples): "
            f"{capture['captured_factors']} of {len(capture['capture_nmi'])}: "
            f"{', '.join(capture['captured']) or 'none'}. Per factor: {detail}. "
            f"What all the codes together carry (a random forest's read-out on the same samples, the same scale): "
            f"{kept}. Kept but spread over several codes: {', '.join(spread) or 'none'}; dropped: "
            f"{', '.join(dropped) or 'none'}.")


def curves_section(files: "RunFiles") -> Section:
    section = Section("Training curves")
    if not files.log:
        section.notes.append(f"No log.jsonl in {files.run_dir}: no training curves.")
        return section
    records, skipped = curves.read_log(files.log)
    if records:
        from submission.capture_probe import capture_curve
        capture = capture_curve(files.log)
        figure = curves.curves_figure(records, capture)
        section.pictures.append(Picture("curves.png", output_files.figure_png_bytes(figure),
                                        f"From {files.log}: {len(records)} log records"
                                        + (f", {len(capture)} capture probes" if capture else ""), plot=True))
    else:
        section.notes.append(f"{files.log} holds no step records yet.")
    if skipped:
        section.notes.append(f"{skipped} unreadable line(s) in {files.log} were skipped.")
    return section


def scores_section(files: "RunFiles") -> Section:
    section = Section("Scores")
    if not files.scores:
        section.notes.append("No scores.json yet: run `python -m evaluate` on the export to score it.")
        return section
    scores = metric_charts.read_scores(files.scores)
    figure = metric_charts.metric_bars_figure({metric_charts.run_label(files.run_dir): scores}, "scores")
    section.pictures.append(Picture("metrics.png", output_files.figure_png_bytes(figure), f"From {files.scores}",
                                    plot=True))
    section.table = [["metric", "score"]] + [[m, scores[m]] for m in metric_charts.metric_order({"": scores})]
    return section


def config_section(files: "RunFiles", view) -> Section:
    section = Section("Configuration")
    if files.config:
        with open(files.config, encoding="utf-8", errors="replace") as f:
            section.text = f.read()
    elif view is not None and view.gin_config:
        section.text = view.gin_config
    else:
        section.notes.append("No config.gin found.")
    return section


def write_report_files(sections: list, output_dir: str, title: str, summary: list) -> str:
    """Every picture as its own file, then report.html (pictures embedded) last, all atomically; returns the HTML path."""
    for section in sections:
        for picture in section.pictures:
            output_files.write_bytes(picture.data, os.path.join(output_dir, picture.filename))
    path = os.path.join(output_dir, REPORT_NAME)
    output_files.write_text(html_report.render_report(title, summary, sections), path)
    return path


def write_run_report(run_dir: str, model=None, dataset=None, dataset_name: str = None, model_path: str = None,
                     output_dir: str = None, steps: int = 10, seed: int = 0, data_dir: str = None) -> str:
    """Write ``output_dir`` (default ``JOB/report``, where JOB is ``run_dir`` or, for a ``train/`` directory, the job
    directory around it, beside representation/ and scores.json): traversals.png/.gif, reconstructions.png, prior_samples.png,
    factor_response.png, curves.png, metrics.png and report.html; returns the HTML path.

    The model is ``model`` (an in-memory kit model), else ``model_path``, else the run's checkpoint, else its
    TorchScript export. The dataset is ``dataset``, else ``dataset_name``, else the one the checkpoint names.
    Raises VisualizeError (one line) on bad input."""
    files = find_run_files(run_dir)
    if model is not None:
        view = ModelView.from_model(model)
    else:
        path = model_path or files.checkpoint or files.representation
        view = load_model_file(path) if path else None
    if dataset is None:
        dataset_name = dataset_name or (view.run_info.get("dataset") if view is not None else None)
        dataset = load_dataset(dataset_name, data_dir) if dataset_name else None
    else:
        dataset_name = dataset_name or getattr(dataset, "name", type(dataset).__name__)
    parts = [lambda: model_section(view, dataset, dataset_name, steps, seed), lambda: curves_section(files),
             lambda: scores_section(files), lambda: config_section(files, view)]
    with torch.no_grad():
        sections = [make() for make in progress(parts, "report", unit="parts")]
    summary = [f"run: {files.run_dir}", f"model: {view.source if view else 'none'}",
               f"dataset: {dataset_name or 'none'}",
               f"written: {datetime.datetime.now().isoformat(timespec='seconds')}"]
    title = f"Run report: {metric_charts.run_label(files.run_dir)}"
    return write_report_files(sections, output_dir or os.path.join(files.job_dir, REPORT_DIRNAME), title, summary)


def write_training_report(run_dir: str, model, dataset) -> str:
    """The end-of-training hook: ``write_run_report`` that never raises (the export already exists; a failing picture
    must not fail the run). Prints one line either way; returns the HTML path or None."""
    try:
        path = write_run_report(run_dir, model=model, dataset=dataset)
    except Exception as exc:
        print(f"report: skipped ({first_line(exc)})",
              file=sys.stderr, flush=True)
        return None
    print(f"report: {path}", file=sys.stderr, flush=True)
    return path


def write_comparison(run_dirs: list, output_dir: str) -> str:
    """Metric bars of several runs side by side (each run's scores.json) as metrics_comparison.png and comparison.html."""
    runs = {}
    for run_dir in run_dirs:
        files = find_run_files(run_dir)
        if not files.scores:
            raise VisualizeError(f"run directory {run_dir} has no scores.json: expected an evaluated run "
                                 f"(python -m evaluate ... --output {run_dir})")
        label = metric_charts.run_label(files.run_dir)
        while label in runs:                        # two runs called local_evaluation in different places
            label += "'"
        runs[label] = metric_charts.read_scores(files.scores)
    figure = metric_charts.metric_bars_figure(runs, f"{len(runs)} runs")
    section = Section("Scores", pictures=[Picture("metrics_comparison.png", output_files.figure_png_bytes(figure),
                                                  "Each run's scores.json", plot=True)])
    metrics = metric_charts.metric_order(runs)
    section.table = [["metric"] + list(runs)] + [[m] + [runs[r].get(m, "n/a") for r in runs] for m in metrics]
    summary = [f"{label}: {os.path.abspath(d)}" for label, d in zip(runs, run_dirs)]
    title = "Run comparison"
    output_files.write_bytes(section.pictures[0].data, os.path.join(output_dir, "metrics_comparison.png"))
    path = os.path.join(output_dir, "comparison.html")
    output_files.write_text(html_report.render_report(title, summary, [section]), path)
    return path
