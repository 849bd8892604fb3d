"""CLI: ``python -m submission.train`` fine-tunes (or trains from scratch) one recipe on one dataset within a budget.

    python -m submission.train --gin_file submission/configs/pvae.gin --dataset mpi3d_sim_toy --output DIR \
        --budget 5m --seed 0 [--init_from CKPT] [--export PATH/pytorch_model.pt] [--max_steps N] [--gin_binding ...]

Writes DIR/checkpoint.pt, DIR/config.gin, DIR/log.jsonl and the verified TorchScript export (default
DIR/../representation/pytorch_model.pt), then a visual report of the run in DIR (``--no_report`` skips it; the export
is written before it, and a failing report only prints "report: skipped (...)"). Re-running the same command with the
same DIR resumes (from the previous checkpoint when the latest is damaged); a second run on a DIR in use is refused.
``python -m pretrain`` runs this same code on the pretraining dataset. Bad input: one line on stderr, exit 2, nothing
written. A full disk or another write error: one line, exit 1, the previous checkpoint and export intact.
"""
import argparse
import os
import signal
import sys
import time

from submission.files import first_line


def build_parser(prog: str, pretrain: bool) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    parser.add_argument("--gin_file", action="append", required=True, help="recipe, e.g. submission/configs/pvae.gin")
    parser.add_argument("--gin_binding", action="append", default=[], help="extra binding, e.g. training.batch_size=32")
    parser.add_argument("--dataset", default="mpi3d_toy" if pretrain else None, required=not pretrain)
    parser.add_argument("--output", required=True, help="run directory (checkpoint.pt, config.gin, log.jsonl)")
    parser.add_argument("--budget", required=True, help="wall-clock budget: 90s, 20m, 8h, 1h30m or seconds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max_steps", type=int, default=None, help="iteration cap (default: the recipe's)")
    parser.add_argument("--no_report", action="store_true", help="skip the visual report written after training")
    parser.add_argument("--tensorboard", action="store_true", help="also log scalars and images for TensorBoard under "
                                                                   "OUTPUT/tensorboard/")
    parser.add_argument("--data_dir", default=None, help="where dataset files live (default: $DISENTANGLEMENT_LIB_DATA, "
                                                         "else ./scratch/dataset)")
    parser.add_argument("--job_dir", default=None, help="the job directory whose progress.jsonl gets the challenge's "
                                                        "progress events (default: the one around --output)")
    parser.add_argument("--grader_span", default="0,1", help="this stage's share a,b of the job's progress bar")
    parser.add_argument("--grading", action="store_true",
                        help="also send the progress to the grader's events client (the pipeline sets it when grading)")
    if not pretrain:
        parser.add_argument("--init_from", default=None, help="pretrained checkpoint to start from")
        parser.add_argument("--export", default=None, help="TorchScript path (default DIR/../representation/...)")
    return parser


def parse_gin(gin_files, bindings) -> None:
    """Register every configurable, then parse the recipe; any problem becomes one line naming the file."""
    import gin
    from submission.gin_compat import gin_python311_compat
    gin_python311_compat()
    from submission import capture_probe, models, objectives, trainer  # noqa: F401  (registers the configurables)
    gin.clear_config()
    for path in gin_files:
        if not os.path.isfile(path):
            raise ValueError(f"gin file {path} does not exist: expected a recipe such as submission/configs/pvae.gin")
    try:
        gin.parse_config_files_and_bindings(gin_files, bindings)
    except Exception as exc:
        detail = first_line(exc, typed=False)
        raise ValueError(f"gin config {' '.join(gin_files)} {' '.join(bindings)} is invalid: {detail}") from None


def load_dataset(name: str, fallback: str = None, data_dir: str = None):
    """The dataset called ``name``; for pretraining, ``fallback`` when the official file is absent."""
    from submission.data import DatasetError, get_dataset
    try:
        return name, get_dataset(name, data_dir=data_dir)
    except (DatasetError, ImportError, OSError) as exc:
        if fallback is None:
            raise ValueError(first_line(exc, typed=False)) from None
        print(f"dataset {name} is unavailable ({first_line(exc, typed=False)}); "
              f"pretraining on {fallback} instead", flush=True)
        return fallback, get_dataset(fallback)


def run(args, pretrain: bool = False, start_time: float = None) -> dict:
    """Validate everything, then train. Raises ValueError (one line) on bad input before anything is written."""
    from submission.budget import parse_budget
    budget_s = parse_budget(args.budget)
    parse_gin(args.gin_file, args.gin_binding)

    from submission import checkpoints, files
    from submission.hardware import seed_everything
    from submission.models import make_model
    from submission.objectives import make_objective
    from submission.trainer import Trainer
    from submission.capture_probe import CaptureProbe
    from submission.training_hooks import GraderProgress

    init = None
    init_from = getattr(args, "init_from", None)
    if init_from:
        init = checkpoints.load_checkpoint(init_from)
    dataset_name, dataset = load_dataset(args.dataset, "mpi3d_sim_toy" if pretrain else None, args.data_dir)
    rng = seed_everything(args.seed)
    model = make_model()
    channels = dataset.observation_shape[-1]
    if getattr(model, "channels", channels) != channels:
        raise ValueError(f"dataset {dataset_name} has {channels}-channel images, but the recipe builds a "
                         f"{model.channels}-channel model: add --gin_binding 'model.channels = {channels}'")
    if init is not None:
        checkpoints.check_architecture(init, model, init_from)
    objective = make_objective()
    job = files.JobLayout(args.job_dir) if args.job_dir else files.JobLayout.around(args.output)
    export_path = None if pretrain else (args.export or job.export)
    extra = {} if args.max_steps is None else {"max_steps": args.max_steps}
    trainer = Trainer(model, objective, dataset, args.output, seed=args.seed, rng=rng, budget_s=budget_s,
                      start_time=time.monotonic() if start_time is None else start_time, export_path=export_path,
                      run_info={"dataset": dataset_name, "role": "pretrain" if pretrain else "train",
                                "init_from": init_from},
                      hooks=[GraderProgress(job.root, _span(args.grader_span), args.grading), CaptureProbe(dataset)],
                      **extra)
    print(f"training on {trainer.device.type}: {'bf16 autocast' if trainer.bf16 else 'fp32'}"
          f"{', channels-last' if trainer.channels_last else ''}, batches "
          f"{f'{trainer.batches.depth} ahead in a thread' if trainer.batches.depth else 'drawn inline'}, "
          f"{trainer.compiler.state()} (training.precision / channels_last / prefetch / compile)", file=sys.stderr)
    if args.tensorboard:                     # pictures need the visualize package; the trainer itself does not
        from submission.visualize import TensorBoardHook
        trainer.hooks.hooks.append(TensorBoardHook(os.path.join(args.output, "tensorboard"), dataset))
    if init is not None and not os.path.exists(trainer.checkpoint_path):
        trainer.init_from(init, init_from)
    summary = trainer.run()
    if str(summary.get("stopped", "")).startswith("signal"):
        return summary                       # stopped by a signal: saved; no report, the caller exits 130
    if not getattr(args, "no_report", False) and os.path.exists(trainer.checkpoint_path):
        # After the final checkpoint and export: the deliverables exist whatever the report does (it never raises).
        from submission.visualize import write_training_report
        write_training_report(args.output, trainer.model, dataset)
    return summary


def _span(text: str) -> tuple:
    try:
        lo, hi = (float(v) for v in str(text).split(","))
    except ValueError:
        raise ValueError(f"--grader_span {text!r} is malformed: expected two fractions a,b such as 0.4,0.9") from None
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"--grader_span {text!r} is out of range: expected 0 <= a <= b <= 1")
    return lo, hi


def main(argv=None, prog: str = "submission.train", pretrain: bool = False) -> int:
    from submission.budget import process_start_time
    args = build_parser(prog, pretrain).parse_args(argv)
    try:
        # The CLI's budget counts from process start (imports included), as the pipeline's stage budgets assume.
        summary = run(args, pretrain=pretrain, start_time=process_start_time() if argv is None else None)
    except ValueError as exc:          # DatasetError, TrainingError, budget and gin problems are all ValueErrors
        # gin appends "In call to configurable ..." on a line of its own to errors raised in a configurable: keep ours.
        print(f"{prog}: error: {first_line(exc, typed=False)}", file=sys.stderr)
        return 2
    except RuntimeError as exc:        # ExportError: the export did not reproduce the model; the old one is kept
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:             # a full disk, a read-only directory: the files written before are intact
        where = f" {exc.filename}" if exc.filename else ""
        print(f"{prog}: error: writing{where} failed ({exc.strerror or exc}); the last checkpoint and export written "
              f"before it are intact", file=sys.stderr)
        return 1
    if str(summary.get("stopped", "")).startswith("signal"):
        name = summary["stopped"][len("signal "):]
        print(f"{prog}: stopped by {name} at step {summary.get('step')}: the checkpoint and export are saved; rerun "
              f"the same command to resume", file=sys.stderr)
        return 128 + int(getattr(signal.Signals, name, signal.SIGINT))     # 130 for Ctrl-C, 143 for SIGTERM
    print(f"{prog}: done: {summary}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
