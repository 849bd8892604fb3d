"""CLI of the local evaluator.

    python -m evaluate --model PATH --dataset NAME --output DIR [--metrics m1 m2 ...] [--exact | --reference] [--quick]
                       [--gin_file F]... [--gin_binding B]... [--batch_size 64] [--jobs N] [--data_dir DIR]
                       [--device cpu|cuda]
    python -m evaluate compare DIR1 DIR2 ...

Default metrics: the five leaderboard ones and ``extra`` (MIC, active dims, total correlation, reconstruction error;
never in scores.json).

Exit status: 0 all metrics scored; 1 some metric failed (the others' results and scores.json are written);
2 bad input (one line on stderr, nothing written).
"""
import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow is imported only for gin.tf; its start-up banner is noise
import sys

from evaluate.errors import EvaluationError
from evaluate.metrics import DEFAULT_METRICS, SELECTABLE


def _evaluate_parser():
    parser = argparse.ArgumentParser(
        prog="python -m evaluate",
        description="Score a representation with disentanglement_lib's metrics at the challenge's settings. "
                    "(`python -m evaluate compare DIR...` ranks earlier runs.)")
    parser.add_argument("--model", required=True,
                        help="TorchScript file (representation/pytorch_model.pt), or a kit checkpoint (checkpoint.pt, "
                             "or the directory holding it)")
    parser.add_argument("--dataset", required=True, help="dataset name from submission.data (e.g. mpi3d_sim_realistic)")
    parser.add_argument("--output", required=True, help="output directory (gets metrics/, scores.json)")
    parser.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS), choices=SELECTABLE, metavar="METRIC",
                        help="metrics to compute (default: the five leaderboard ones and extra); from: "
                             f"{', '.join(SELECTABLE)}. extra = MIC, active dims, total correlation, and with a kit "
                             "checkpoint the reconstruction error: printed below the leaderboard, never in scores.json")
    parser.add_argument("--exact", action="store_true",
                        help="every code bit for bit what dlib's batching gives on this CPU (the default encodes each "
                             "distinct image once and reports how far that is from dlib's batching)")
    parser.add_argument("--reference", action="store_true",
                        help="call dlib the plain way (the same sampling, about twice as slow)")
    parser.add_argument("--quick", action="store_true",
                        help="~1/10 of the samples (configs/quick.gin): for smoke tests; NOT the leaderboard's settings")
    parser.add_argument("--gin_file", action="append", default=[], help="extra gin file (repeatable)")
    parser.add_argument("--gin_binding", action="append", default=[], help="extra gin binding (repeatable)")
    parser.add_argument("--batch_size", type=int, default=64, help="images per model call in the fast bulk pass")
    parser.add_argument("--jobs", type=int, default=None,
                        help="cores to use: the encoder's threads plus DCI's fit processes (default: all CPUs)")
    parser.add_argument("--data_dir", default=None, help="data directory (default: $DISENTANGLEMENT_LIB_DATA)")
    parser.add_argument("--job_dir", default=None, help="report progress to this job directory's progress.jsonl "
                                                        "(the pipeline sets it)")
    parser.add_argument("--grader_span", default="0,1", help="this stage's share a,b of the job's progress bar")
    parser.add_argument("--grading", action="store_true",
                        help="also send the progress to the grader's events client (the pipeline sets it when grading)")
    parser.add_argument("--device", default="cpu",
                        help="where the model encodes: cpu (default, like the reference) or cuda / cuda:N; codes from a "
                             "GPU can differ from the CPU's by float rounding, and the report says so")
    return parser


def _compare(argv):
    parser = argparse.ArgumentParser(prog="python -m evaluate compare",
                                     description="Rank runs by each leaderboard metric and by mean rank.")
    parser.add_argument("runs", nargs="+", help="output directories of `python -m evaluate` (each has scores.json)")
    args = parser.parse_args(argv)
    from evaluate.ranking import compare, format_comparison
    print(format_comparison(compare(args.runs)))
    return 0


def _span(text):
    try:
        lo, hi = (float(v) for v in str(text).split(","))
    except ValueError:
        raise EvaluationError(f"--grader_span {text!r} is malformed: expected two fractions a,b such as 0.9,1") from None
    return lo, hi


def _evaluate(argv):
    args = _evaluate_parser().parse_args(argv)
    from evaluate.runner import run
    from evaluate.table import format_table
    report = run(args.model, args.dataset, args.output, metrics=args.metrics, reference=args.reference,
                 exact=args.exact, quick=args.quick, gin_files=args.gin_file, gin_bindings=args.gin_binding, batch_size=args.batch_size,
                 jobs=args.jobs, data_dir=args.data_dir, device=args.device,
                 grader=(args.job_dir, _span(args.grader_span), args.grading) if args.job_dir else None)
    print(format_table(report["info"]))
    return 1 if report["errors"] else 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if argv and argv[0] == "compare":
            return _compare(argv[1:])
        return _evaluate(argv)
    except EvaluationError as exc:
        # gin appends "In call to configurable ..." on a line of its own to errors raised inside a metric: keep ours.
        from submission.files import first_line
        print(f"error: {first_line(exc, typed=False)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("evaluate: interrupted (Ctrl-C): no scores.json and no metric results written by this run; the model "
              "file is untouched", file=sys.stderr)
        return 130
    except OSError as exc:      # a full disk, a read-only directory: every file written before is whole (atomic writes)
        where = f" {exc.filename}" if exc.filename else ""
        print(f"error: writing{where} failed ({exc.strerror or exc}); files written before it are intact",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
