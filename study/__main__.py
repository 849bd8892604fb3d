"""``python -m study run|table|status``: see the package docstring and the README's "Studies" section.

Exit codes: 0 everything asked for is done, 1 some trial failed (recorded; the others ran), 2 bad input or no Ray
(one line on stderr, nothing started or written).
"""
import argparse
import sys

PROG = "study"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Recipes x seeds x settings, on Ray Tune.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the trials that are not done yet")
    run.add_argument("--recipes", nargs="+", required=True, help="names of submission/configs/<name>.gin")
    run.add_argument("--seeds", nargs="*", type=int, default=[0])
    run.add_argument("--grid", action="append", default=[], help='a setting to sweep: "BetaTCVAE.beta=[1,2,4]"')
    run.add_argument("--steps", type=int, required=True, help="fine-tuning steps per trial")
    run.add_argument("--budget", default=None, help="wall-clock cap on each fine-tuning, e.g. 30m (default: none)")
    run.add_argument("--dataset", default="mpi3d_sim_realistic")
    run.add_argument("--pretrain_dataset", default="mpi3d_sim_toy")
    run.add_argument("--pretrain_steps", type=int, default=0,
                     help="shared pretraining steps on --pretrain_dataset before each recipe (default 0: none)")
    run.add_argument("--quick_eval", action="store_true", help="the evaluator's quick settings (not the leaderboard's)")
    run.add_argument("--cpus_per_trial", type=int, default=1, help="CPUs (and threads) per trial")
    run.add_argument("--gpus_per_trial", type=float, default=0)
    run.add_argument("--address", default=None, help="a Ray cluster: auto or HOST:PORT (default: an embedded Ray)")
    for sub in (run, commands.add_parser("table", help="write table.md and table.png of the finished trials"),
                commands.add_parser("status", help="each trial: done, running, failed or pending")):
        sub.add_argument("--name", required=True, help="the study's name: studies/<name>/")
        sub.add_argument("--output", default="studies", help="where studies live (default: studies)")
        sub.add_argument("--scratch", default="scratch", help="checkpoints and Ray's files (default: scratch)")
    return parser


def _plan(args) -> list:
    from submission.budget import parse_budget
    from study.plan import StudyError, plan_trials
    if args.cpus_per_trial < 1 or args.gpus_per_trial < 0:
        raise StudyError(f"--cpus_per_trial {args.cpus_per_trial} / --gpus_per_trial {args.gpus_per_trial}: "
                         f"expected at least 1 CPU and 0 or more GPUs")
    try:
        budget_s = parse_budget(args.budget) if args.budget else None
    except ValueError as exc:
        raise StudyError(str(exc).replace("BUDGET", "--budget")) from None
    return plan_trials(args.recipes, args.seeds, args.grid, args.steps, budget_s, args.dataset,
                       args.pretrain_dataset, args.pretrain_steps, args.quick_eval)


def run(args, paths) -> int:
    from study.runner import run_study
    from study.state import run_lock
    from study.table import write_table
    specs = _plan(args)
    with run_lock(paths):
        counts = run_study(paths, specs, args.cpus_per_trial, args.gpus_per_trial, args.address)
    write_table(paths)
    print(f"study {paths.name}: {counts['done']} ran, {counts['failed']} failed, {counts['skipped']} already done; "
          f"{paths.study_dir}", flush=True)
    return 1 if counts["failed"] else 0


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    from study.plan import StudyError
    from study.runner import ClusterError
    from study.state import study_paths
    try:
        paths = study_paths(args.name, args.output, args.scratch)
        if args.command == "run":
            return run(args, paths)
        if args.command == "table":
            from study.table import write_table
            print(write_table(paths, require_runs=True))
            return 0
        from study.status import print_status
        return print_status(paths)
    except (StudyError, ClusterError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
