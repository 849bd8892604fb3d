"""Where every dataset comes from, and the download command: ``python -m submission.data.download NAME`` or ``--list``.

Resumes a partial download with an HTTP Range request (RFC 7233), writes ``<file>.part`` and renames it only when complete,
shows progress with the kit's one progress display, and checks MD5 sums: a sum we trust is enforced (a mismatch sets the
file aside as ``.bad-md5``); a sum reported only by third parties, or none at all, is printed beside the file's own so a person
can judge.  Offline or unreachable hosts give one clear line and exit code 1.

Sources: the MPI3D bucket ``storage.googleapis.com/disentanglement_dataset`` closed in 2023; the files
have been at huggingface.co/datasets/waleedgondal/mpi3d since 2025 (``mpi3d_real`` was re-uploaded after a corruption
report, so its 2019 sum may no longer match).
"""

import argparse
import hashlib
import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from submission.data.errors import DatasetError
from submission.data.registry import DATASET_NAMES, default_data_dir

_MPI3D_BASE = "https://huggingface.co/datasets/waleedgondal/mpi3d/resolve/main/"
_DSPRITES = "dsprites/dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
_DSPRITES_URL = "https://github.com/deepmind/dsprites-dataset/raw/master/dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
_NORB_CHUNKS = ("5x46789x9x18x6x2x96x96-training", "5x01235x9x18x6x2x96x96-testing")
CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class DataFile:
    """One file a dataset needs: its path under the data directory, a direct URL (None: fetched by hand), an MD5."""

    path: str
    url: str = None
    md5: str = None
    md5_enforced: bool = False   # False: the sum is third-party only (may describe an older upload): printed, not enforced


@dataclass(frozen=True)
class Source:
    """Where a dataset comes from: the files it needs, the download size, and a line for people."""

    files: tuple
    size: str
    where: str


def _mpi3d(name, md5, enforced):
    return Source((DataFile(f"{name}/{name}.npz", _MPI3D_BASE + f"{name}.npz", md5, enforced),), "12.7 GB",
                  _MPI3D_BASE + f"{name}.npz")


_DSPRITES_SOURCE = Source((DataFile(_DSPRITES, _DSPRITES_URL),), "26 MB", "github.com/deepmind/dsprites-dataset")
_PROCEDURAL = Source((), "-", "procedural: rendered by the kit, no file")

SOURCES = {
    "mpi3d_toy": _mpi3d("mpi3d_toy", "55889cb7c7dfc655d6e0277beee88868", True),
    "mpi3d_realistic": _mpi3d("mpi3d_realistic", "59a6225b88b635365f70c91b3e52f70f", True),
    # The 2019 sum; the file was re-uploaded in 2025 after a corruption report, so it is printed, not enforced.
    "mpi3d_real": _mpi3d("mpi3d_real", "0f33f609918fb5c97996692f91129802", False),
    "mpi3d_complex": Source((DataFile("mpi3d_complex/mpi3d_complex.npz"),), "5.7 GB",
                            "by hand: real3d_complicated_shapes_ordered.npz (Google Drive link in the README of "
                            "github.com/rr-learning/disentanglement_dataset), saved as mpi3d_complex/mpi3d_complex.npz"),
    "dsprites_full": _DSPRITES_SOURCE,
    "dsprites_noshape": _DSPRITES_SOURCE,
    "color_dsprites": _DSPRITES_SOURCE,
    "noisy_dsprites": _DSPRITES_SOURCE,
    "scream_dsprites": Source((DataFile(_DSPRITES, _DSPRITES_URL),
                               DataFile("scream/scream.jpg",
                                        "https://upload.wikimedia.org/wikipedia/commons/f/f4/The_Scream.jpg")),
                              "26 MB + 1 MB", "dSprites plus Munch's The Scream from Wikimedia Commons"),
    "shapes3d": Source((DataFile("3dshapes/3dshapes.h5", "https://storage.googleapis.com/3d-shapes/3dshapes.h5",
                                 "099a2078d58cec4daad0702c55d06868"),), "268 MB", "github.com/deepmind/3d-shapes"),
    "cars3d": Source((DataFile("cars"),), "?",
                     "by hand: www.scottreed.info/files/nips2015-analogy-data.tar.gz; put its data/cars/*.mat in cars/"),
    "smallnorb": Source(tuple(DataFile(f"small_norb/smallnorb-{chunk}-{kind}.mat") for chunk in _NORB_CHUNKS
                              for kind in ("dat", "cat", "info")), "0.9 GB",
                        "by hand: cs.nyu.edu/~ylclab/data/norb-v1.0-small/ (the six *.mat.gz, gunzipped into small_norb/)"),
}
SOURCES.update({name: _PROCEDURAL for name in DATASET_NAMES if name not in SOURCES})
OWN_DATA_SOURCE = Source((), "-", "your own HDF5 file: --dataset h5:PATH (README, Datasets)")


def source_of(name):
    if name not in SOURCES:
        raise DatasetError(f"unknown dataset {name!r}; expected one of: {', '.join(SOURCES)}")
    return SOURCES[name]


def is_present(name, data_dir):
    """True when every file the dataset needs exists (procedural datasets: always)."""
    return all((Path(data_dir) / data_file.path).exists() for data_file in source_of(name).files)


def listing(data_dir):
    """The ``--list`` table: one line per dataset with its size, whether it is present in ``data_dir``, and its source."""
    rows = [("name", "size", "present", "source")]
    for name, source in list(SOURCES.items()) + [("h5:PATH", OWN_DATA_SOURCE)]:
        present = "-" if not source.files else ("yes" if is_present(name, data_dir) else "no")
        rows.append((name, source.size, present, source.where))
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    lines = ["  ".join(value.ljust(width) for value, width in zip(row[:3], widths)) + "  " + row[3] for row in rows]
    return "\n".join([f"data directory: {data_dir}"] + lines)


def file_md5(path):
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(url, destination, timeout=30.0, show_progress=True):
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
                           f"(offline? use a procedural stand-in: mpi3d_sim_*, dsprites_sim, shapes3d_sim)") from None
    from submission.progress import progress
    with response:
        resumed = response.status == 206
        if not resumed:
            have = 0  # the server ignored the Range header: start afresh
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        bar = progress(total, f"download {destination.name}", unit="B") if show_progress else None
        if bar is not None:
            bar.update(have)
        try:
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
                    if bar is not None:
                        bar.update(len(chunk))
                size = out.tell()
        finally:
            if bar is not None:
                bar.close()
    if total is not None and size != total:
        raise DatasetError(f"{url}: received {size:,} bytes; expected {total:,} (run again to resume)")
    os.replace(partial, destination)
    return destination


def check_md5(path, data_file, md5=None):
    """Enforce ``md5`` (or the file's trusted sum); otherwise print the file's sum beside any third-party one."""
    expected = md5 or (data_file.md5 if data_file.md5_enforced else None)
    actual = file_md5(path)
    if expected and actual != expected:
        bad = path.with_name(path.name + ".bad-md5")
        os.replace(path, bad)
        raise DatasetError(f"{path}: MD5 {actual}; expected {expected} (file kept as {bad.name}; if its host re-uploaded "
                           f"it, check the source and pass --md5 {actual})")
    if not expected:
        note = ("no published sum to check against" if not data_file.md5 else
                "matches the third-party sum" if actual == data_file.md5 else
                f"differs from the third-party sum {data_file.md5}, which may describe an older upload")
        print(f"{path}: MD5 {actual} ({note})", file=sys.stderr)
    return actual


def download(name, data_dir=None, url=None, md5=None, timeout=30.0):
    """Download the files of dataset ``name`` that are missing from ``data_dir`` and check their MD5; returns the first path."""
    source = source_of(name)
    if not source.files:
        raise DatasetError(f"{name}: nothing to download; expected a dataset with files ({source.where})")
    data_dir = Path(data_dir or default_data_dir())
    manual = [f for f in source.files if f.url is None and not (data_dir / f.path).exists()]
    if manual and url is None:
        raise DatasetError(f"{data_dir / manual[0].path}: not found and not downloadable here; expected it placed "
                           f"{source.where}")
    if url is not None and len(source.files) > 1:
        raise DatasetError(f"{name}: --url given for a dataset of {len(source.files)} files; expected a one-file dataset")
    for data_file in source.files:
        destination = data_dir / data_file.path
        if destination.exists() and url is None:
            continue
        fetch(url or data_file.url, destination, timeout=timeout)
        check_md5(destination, data_file, md5)
    return data_dir / source.files[0].path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", nargs="?", help=f"one of {', '.join(n for n, s in SOURCES.items() if s.files)}")
    parser.add_argument("--list", action="store_true", help="show every dataset, its size, source and whether it is here")
    parser.add_argument("--data_dir", default=None, help="default: $DISENTANGLEMENT_LIB_DATA, else ./scratch/dataset")
    parser.add_argument("--url", default=None, help="download from here instead of the official URL")
    parser.add_argument("--md5", default=None, help="enforce this MD5")
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args(argv)
    if args.list:
        print(listing(Path(args.data_dir or default_data_dir())))
        return 0
    if args.name is None:
        parser.error("a dataset name or --list is required")
    try:
        path = download(args.name, args.data_dir, args.url, args.md5, args.timeout)
    except DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
