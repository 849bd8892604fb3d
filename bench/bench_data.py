"""Data-layer figures: batch-64 sampling speed (procedural and on-disk npz) and peak RSS on a full-size file.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_data.py [--num_images 1036800] [--dir scratch/bench_data] [--keep]
                                                           [--skip_npz] [--skip_procedural] [--warm_up_only]

The npz part writes a synthetic MPI3D-format npz (uncompressed zip holding images.npy, as published) of ``num_images``
images, converts it to the .npy the default ``storage="disk"`` reads, samples random batches and checks each image is the
one its factors index (image i is filled with i % 251).  Peak RSS while sampling is the kernel's high-water mark VmHWM,
reset (``/proc/self/clear_refs``) after the file is written and converted, so it covers only opening and sampling; the
high-water mark up to then (ru_maxrss, which includes writing the synthetic file) is printed before the reset.  Files are
deleted afterwards unless --keep.
"""

import argparse
import os
import resource
import shutil
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from submission.data import get_dataset  # noqa: E402
from submission.data.npz_datasets import MPI3D_LAYOUTS, Mpi3dNpz  # noqa: E402


def peak_rss_mb():
    """The process's RSS high-water mark (Linux: since start, or since the last reset_rss_high_water)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _status_mb(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def reset_rss_high_water():
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def throughput(render, sizes, repeats, batches, batch=64, seed=0):
    """Median images/s over ``repeats`` runs of ``batches`` calls of ``render(factors)``."""
    rng = np.random.default_rng(seed)
    rates = []
    for _ in range(repeats):
        factors = [np.stack([rng.integers(0, s, batch) for s in sizes], 1) for _ in range(batches)]
        start = time.perf_counter()
        for f in factors:
            render(f)
        rates.append(batch * batches / (time.perf_counter() - start))
    return float(np.median(rates)), rates


def write_synthetic_npz(path, num_images, chunk=8192):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        with archive.open("images.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(member, {"descr": "|u1", "fortran_order": False,
                                                          "shape": (num_images, 64, 64, 3)})
            for start in range(0, num_images, chunk):
                index = np.arange(start, min(start + chunk, num_images))
                block = np.broadcast_to((index % 251).astype(np.uint8)[:, None, None, None], (len(index), 64, 64, 3))
                member.write(np.ascontiguousarray(block).tobytes())


def bench_npz(directory, num_images, repeats, batches):
    path = directory / "mpi3d_bench" / "mpi3d_bench.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    layouts = MPI3D_LAYOUTS if num_images in MPI3D_LAYOUTS else {num_images: (num_images // 1600, 40, 40)}
    start = time.perf_counter()
    write_synthetic_npz(path, num_images)
    print(f"npz: wrote {num_images:,} images ({path.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - start:.0f} s")
    start = time.perf_counter()
    Mpi3dNpz(path, name="mpi3d_bench", layouts=layouts)
    print(f"npz: converted to .npy in {time.perf_counter() - start:.0f} s; peak RSS so far {peak_rss_mb():.0f} MB")
    hwm_reset = reset_rss_high_water()
    print(f"npz: RSS before opening and sampling {_status_mb('VmRSS'):.0f} MB"
          f"{'' if hwm_reset else ' (cannot reset VmHWM here: the peak below includes writing the file)'}")
    ds = Mpi3dNpz(path, name="mpi3d_bench", layouts=layouts)  # the default storage, as training opens it
    print(f"npz: storage {ds.storage!r}; layout {ds.factors_num_values}")
    strides = ds._strides
    for f in [np.stack([np.random.default_rng(9).integers(0, s, 64) for s in ds.factor_sizes], 1)]:
        assert np.array_equal(ds.images_from_factors(f)[:, 0, 0, 0], ((f @ strides) % 251).astype(np.uint8))
    median, rates = throughput(ds.images_from_factors, ds.factor_sizes, repeats, batches)
    print(f"npz {ds.storage} images_from_factors, batch 64: median {median:,.0f} img/s "
          f"(runs: {', '.join(f'{r:,.0f}' for r in rates)})")
    median, rates = sample_batch_throughput(ds, repeats, batches)
    print(f"npz {ds.storage} sample_batch (torch NCHW), batch 64: median {median:,.0f} img/s "
          f"(runs: {', '.join(f'{r:,.0f}' for r in rates)})")
    print(f"npz: peak RSS while sampling {_status_mb('VmHWM'):.0f} MB (VmHWM; limit 2048 MB; the file is "
          f"{num_images * 12288 / 1e9:.2f} GB); RSS now {_status_mb('VmRSS'):.0f} MB")
    return path.parent


def sample_batch_throughput(ds, repeats, batches, batch=64, seed=1):
    """Median images/s over ``repeats`` runs of ``batches`` calls of ``ds.sample_batch``."""
    rng = np.random.default_rng(seed)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(batches):
            ds.sample_batch(batch, rng)
        rates.append(batch * batches / (time.perf_counter() - start))
    return float(np.median(rates)), rates


def bench_procedural(repeats, batches):
    for name in ("mpi3d_sim_toy", "mpi3d_sim_realistic", "dsprites_sim"):
        ds = get_dataset(name)
        start = time.perf_counter()
        sizes = ds.factors_num_values
        if name.startswith("mpi3d"):  # build every base image once, as a long training run would
            cam, bg, d1, d2 = np.meshgrid(range(3), range(3), range(40), range(40), indexing="ij")
            grid = np.stack([np.zeros(cam.size, int), np.zeros(cam.size, int), np.zeros(cam.size, int),
                             cam.ravel(), bg.ravel(), d1.ravel(), d2.ravel()], 1)
            ds.images_from_factors(grid)
        else:
            ds.images_from_factors(np.zeros((1, 5), int))
        print(f"{name}: tables built in {time.perf_counter() - start:.1f} s")
        median, rates = throughput(ds.images_from_factors, sizes, repeats, batches)
        print(f"{name} images_from_factors, batch 64: median {median:,.0f} img/s "
              f"(runs: {', '.join(f'{r:,.0f}' for r in rates)})")
        median, rates = sample_batch_throughput(ds, repeats, batches)
        print(f"{name} sample_batch (torch NCHW), batch 64: median {median:,.0f} img/s "
              f"(runs: {', '.join(f'{r:,.0f}' for r in rates)})")
    print(f"peak RSS after procedural part {peak_rss_mb():.0f} MB")


FRESH_PROCESS = """
import sys, time, numpy as np
from submission.data import get_dataset
dataset, rng, drawn, start = get_dataset(sys.argv[1]), np.random.default_rng(0), [], time.monotonic()
while time.monotonic() - start < 3.0:
    dataset.sample_batch(64, rng)
    drawn.append(time.monotonic() - start)
print(sum(t <= 1.0 for t in drawn) * 64, len(drawn) * 64 / drawn[-1])
"""


def bench_warm_up(names=("mpi3d_sim_toy", "mpi3d_sim_realistic", "dsprites_sim", "shapes3d_sim")):
    """A fresh process's first batches (sample_batch(64), its first second and its first three seconds), the way every
    pipeline stage, evaluation and study trial starts; the render cache is built first if it is not there yet."""
    import subprocess
    root = str(Path(__file__).resolve().parents[1])
    for name in names:
        get_dataset(name).sample_batch(64, np.random.default_rng(0))        # the cache exists from here on
        out = subprocess.run([sys.executable, "-c", FRESH_PROCESS, name], cwd=root, capture_output=True, text=True,
                             env=dict(os.environ, PYTHONPATH=root), check=True).stdout.split()
        print(f"{name}: a fresh process draws {int(out[0]):,} img/s in its first second, {float(out[1]):,.0f} img/s "
              f"over its first 3 s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_images", type=int, default=1_036_800, help="synthetic npz size (multiple of 1600)")
    parser.add_argument("--dir", type=Path, default=Path(__file__).resolve().parents[1] / "scratch" / "bench_data")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--skip_npz", action="store_true")
    parser.add_argument("--skip_procedural", action="store_true")
    parser.add_argument("--warm_up_only", action="store_true", help="only the fresh-process figures")
    args = parser.parse_args()
    if args.warm_up_only:
        return bench_warm_up()
    if not args.skip_npz:
        try:
            bench_npz(args.dir, args.num_images, args.repeats, args.batches)
        finally:
            if not args.keep:
                shutil.rmtree(args.dir / "mpi3d_bench", ignore_errors=True)
    if not args.skip_procedural:
        bench_procedural(args.repeats, args.batches)
        bench_warm_up()


if __name__ == "__main__":
    main()
