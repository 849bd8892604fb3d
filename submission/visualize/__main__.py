"""CLI: pictures and an HTML report for a run, or metric bars comparing runs.

    python -m submission.visualize --run DIR [--dataset NAME] [--model PATH] [--output DIR] [--steps K] [--seed S]
    python -m submission.visualize --compare DIR1 DIR2 ... [--output DIR]

``--run`` takes the job's output directory or its train/ directory. ``--model`` overrides the model: a trainer
checkpoint (everything) or a TorchScript representation (factor responses only). ``--dataset`` defaults to the one
the checkpoint was trained on. Output: JOB/report/ for ``--run`` (JOB is DIR, or the directory around a train/ DIR),
./scratch/compare for ``--compare``.
Bad input: one line on stderr, exit 2.
"""
import argparse
import sys

from .run_report import write_comparison, write_run_report
from .sources import VisualizeError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m submission.visualize",
                                     description="Traversals, reconstructions, samples, curves and an HTML report.")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--run", help="a run's output directory (or its train/ directory)")
    what.add_argument("--compare", nargs="+", metavar="DIR", help="run directories whose scores.json to compare")
    parser.add_argument("--dataset", help="dataset name (default: the one the checkpoint names)")
    parser.add_argument("--model", help="checkpoint.pt or TorchScript pytorch_model.pt (default: the run's own)")
    parser.add_argument("--output", help="output directory (default: JOB/report, or ./scratch/compare)")
    parser.add_argument("--steps", type=int, default=10, help="traversal steps per dimension (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the images and prior samples shown (default 0)")
    parser.add_argument("--data_dir", default=None, help="where dataset files live (default: $DISENTANGLEMENT_LIB_DATA)")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.steps < 2:
        parser.exit(2, f"{parser.prog}: error: --steps {args.steps}: expected at least 2\n")
    try:
        if args.compare:
            path = write_comparison(args.compare, args.output or "./scratch/compare")
        else:
            path = write_run_report(args.run, dataset_name=args.dataset, model_path=args.model,
                                    output_dir=args.output, steps=args.steps, seed=args.seed,
                                    data_dir=args.data_dir)
    except VisualizeError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
