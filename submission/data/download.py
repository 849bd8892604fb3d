"""Download an official dataset file into the data directory: ``python -m submission.data.download NAME``.

Resumes a partial download with an HTTP Range request (RFC 7233), verifies the MD5 where a sum is known, writes
``<file>.part`` and renames it only when complete.  Offline or unreachable hosts give one clear line and exit code 1.
"""

import argparse
import hashlib
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from submission.data.errors import DatasetError
from submission.data.npz_datasets import DSPRITES_RELATIVE_PATH, mpi3d_npz_path
from submission.data.registry import default_data_dir

_MPI3D_BASE = "https://storage.googleapis.com/disentanglement_dataset/Final_Dataset/"
OFFICIAL_URLS = {
    "mpi3d_toy": _MPI3D_BASE + "mpi3d_toy.npz",
    "mpi3d_realistic": _MPI3D_BASE + "mpi3d_realistic.npz",
    "mpi3d_real": _MPI3D_BASE + "mpi3d_real.npz",
    "dsprites_full": "https://github.com/deepmind/dsprites-dataset/raw/master/dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz",
}
# Sums we have confirmed ourselves: enforced.  None yet; pass --md5 to enforce one.
VERIFIED_MD5 = {}
# Sums reported by third-party loaders only (NOTES.md): a mismatch warns, since they may describe an older file.
REPORTED_MD5 = {"mpi3d_toy": "55889cb7c7dfc655d6e0277beee88868"}
CHUNK_BYTES = 1 << 20


def target_path(name, data_dir):
    """Where get_dataset(name) looks for the file."""
    if name == "dsprites_full":
        return Path(data_dir) / DSPRITES_RELATIVE_PATH
    return mpi3d_npz_path(name, data_dir)


def file_md5(path):
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(url, destination, timeout=30.0, show_progress=None):
    """Download ``url`` to ``destination`` via ``<destination>.part``, resuming a partial file; returns the path."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".part")
    have = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and have:  # the partial file already holds everything
            os.replace(partial, destination)
            return destination
        raise DatasetError(f"{url}: HTTP {error.code} {error.reason}; expected the file (200 or 206)") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise DatasetError(f"{url}: cannot connect ({reason}); expected network access "
                           f"(offline? use the procedural stand-ins mpi3d_sim_* / dsprites_sim)") from None
    with response:
        resumed = response.status == 206
        if not resumed:
            have = 0  # the server ignored the Range header: start afresh
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        if show_progress is None:
            show_progress = sys.stderr.isatty()
        progress = None
        if show_progress:
            from tqdm import tqdm
            progress = tqdm(total=total, initial=have, unit="B", unit_scale=True, desc=destination.name)
        next_report = 0.1
        with open(partial, "ab" if resumed else "wb") as out:
            while True:
                try:
                    chunk = response.read(CHUNK_BYTES)
                except OSError as error:
                    raise DatasetError(f"{url}: connection lost after {out.tell():,} bytes ({error}); "
                                       f"expected the whole file (run again to resume)") from None
                if not chunk:
                    break
                out.write(chunk)
                if progress is not None:
                    progress.update(len(chunk))
                elif total and out.tell() / total >= next_report:
                    print(f"{destination.name}: {out.tell():,} / {total:,} bytes", file=sys.stderr, flush=True)
                    next_report += 0.1
            size = out.tell()
        if progress is not None:
            progress.close()
    if total is not None and size != total:
        raise DatasetError(f"{url}: received {size:,} bytes; expected {total:,} (run again to resume)")
    os.replace(partial, destination)
    return destination


def download(name, data_dir=None, url=None, md5=None, timeout=30.0):
    """Download dataset ``name`` into ``data_dir`` and check its MD5; returns the file's path."""
    if name not in OFFICIAL_URLS:
        raise DatasetError(f"unknown downloadable dataset {name!r}; expected one of: {', '.join(OFFICIAL_URLS)}")
    destination = target_path(name, data_dir or default_data_dir())
    path = fetch(url or OFFICIAL_URLS[name], destination, timeout=timeout)
    expected = md5 or VERIFIED_MD5.get(name)
    reported = REPORTED_MD5.get(name)
    if expected or reported:
        actual = file_md5(path)
        if expected and actual != expected:
            bad = path.with_name(path.name + ".bad-md5")
            os.replace(path, bad)
            raise DatasetError(f"{path}: MD5 {actual}; expected {expected} (file kept as {bad.name})")
        if not expected and actual != reported:
            print(f"warning: {path}: MD5 {actual} differs from the third-party sum {reported} "
                  f"(unverified; it may describe an older file)", file=sys.stderr)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help=f"one of {', '.join(OFFICIAL_URLS)}")
    parser.add_argument("--data_dir", default=None, help="default: $DISENTANGLEMENT_LIB_DATA, else ./scratch/dataset")
    parser.add_argument("--url", default=None, help="download from here instead of the official URL")
    parser.add_argument("--md5", default=None, help="enforce this MD5")
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args(argv)
    try:
        path = download(args.name, args.data_dir, args.url, args.md5, args.timeout)
    except DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
