"""The MPI3D stand-ins' traversal figures: every factor stepped across its range, the others held, version 2 beside
version 1 (the planar two-link arm it replaced), one figure per style.

    .venv/bin/python docs/standin/traversals.py        # writes docs/standin/traversals_{toy,realistic}.png

Version 1's renderer is read from the commit before version 2 (``V1_COMMIT``) with ``git show``, so this needs the
repository's history; its base images are rendered into a temporary cache.
"""
import importlib.util
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
V1_COMMIT = "f2fe3e5"
BASE = (2, 1, 1, 1, 0, 20, 20)     # red cube, large, centre camera, purple, arm in the middle of both ranges
COLUMNS = 8


def load_v1(cache_dir):
    source = subprocess.check_output(["git", "show", f"{V1_COMMIT}:submission/data/mpi3d_render.py"], cwd=ROOT)
    source = source.replace(b"submission.artifacts", b"submission.files")     # where atomic_write lives now
    path = os.path.join(cache_dir, "mpi3d_render_v1.py")
    with open(path, "wb") as f:
        f.write(source)
    spec = importlib.util.spec_from_file_location("mpi3d_render_v1", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def traversal(render, style):
    """(7 * 64, COLUMNS * 64, 3) uint8: row k steps factor k over COLUMNS values spread over its range."""
    from submission.data.mpi3d_render import MPI3D_FACTOR_SIZES
    rows = []
    for factor, size in enumerate(MPI3D_FACTOR_SIZES):
        factors = np.tile(np.array(BASE, np.int64), (COLUMNS, 1))
        factors[:, factor] = np.round(np.linspace(0, size - 1, COLUMNS)).astype(np.int64)
        rows.append(np.concatenate(list(render(factors, style)), axis=1))
    return np.concatenate(rows, axis=0)


def main():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from submission.data import mpi3d_render
    from submission.files import atomic_write
    with tempfile.TemporaryDirectory() as cache:
        os.environ["KIT_RENDER_CACHE"] = cache
        v1 = load_v1(cache)
        for style in ("toy", "realistic"):
            fig, axes = plt.subplots(1, 2, figsize=(12, 5.6))
            for ax, (label, module) in zip(axes, (("version 2: the arm turns about its base", mpi3d_render),
                                                  ("version 1: a planar two-link arm", v1))):
                ax.imshow(traversal(module.render_mpi3d, style))
                ax.set_title(f"mpi3d_sim_{style}, {label}", fontsize=9)
                ax.set_yticks(np.arange(len(module.MPI3D_FACTOR_NAMES)) * 64 + 32)
                ax.set_yticklabels(module.MPI3D_FACTOR_NAMES, fontsize=8)
                ax.set_xticks([])
            fig.tight_layout()
            path = os.path.join(ROOT, "docs", "standin", f"traversals_{style}.png")
            atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
            plt.close(fig)
            print(path)


if __name__ == "__main__":
    main()
