"""How much the grader's DCI moves from run to run: dlib's DCI on one export with numpy's global RNG seeded differently.

disentanglement_lib never seeds numpy's global RNG, but sklearn's GradientBoostingClassifier inside DCI draws its trees'
tie-breaking seeds from it, so the grader's DCI carries that noise. The kit's evaluator seeds it with 0 (and then
matches dlib called directly, digit for digit). This script runs dlib's own ``compute_dci`` at the challenge settings
(num_train 10000, num_test 5000, batch 16, ``RandomState(0)`` for the sampling) once per global seed, and prints each
score and the spread.

    OMP_NUM_THREADS=1 .venv/bin/python bench/dci_noise.py --model EXPORT --dataset mpi3d_sim_realistic [--seeds 0 1 2 3 4]
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--dataset", default="mpi3d_sim_realistic")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    args = parser.parse_args()
    from submission.gin_compat import gin_python311_compat
    gin_python311_compat()
    from disentanglement_lib.evaluation.metrics import dci
    from evaluate.representation import load_representation, representation_function
    from submission.data import get_dataset
    from submission.hardware import cpu_summary
    from evaluate.errors import EvaluationError
    from submission.data import DatasetError
    try:
        dataset = get_dataset(args.dataset)
        represent = representation_function(load_representation(args.model))
    except (EvaluationError, DatasetError) as exc:
        print(f"dci_noise: error: {exc}", file=sys.stderr)
        return 2
    print(f"CPU: {cpu_summary()}; dlib DCI on {args.model}, {args.dataset}, challenge settings", flush=True)
    scores = []
    for seed in [None, *args.seeds]:
        if seed is not None:
            np.random.seed(seed)
        t0 = time.monotonic()
        result = dci.compute_dci(dataset, represent, np.random.RandomState(0), None, num_train=10000, num_test=5000,
                                 batch_size=16)
        print(f"global seed {'unseeded' if seed is None else seed:>8}: disentanglement = "
              f"{result['disentanglement']:.6f} ({time.monotonic() - t0:.0f} s)", flush=True)
        scores.append(result["disentanglement"])
    print(f"\n{len(scores)} runs: min {min(scores):.6f}, max {max(scores):.6f}, spread {max(scores) - min(scores):.6f}, "
          f"std {statistics.stdev(scores):.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
