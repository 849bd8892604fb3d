"""An npz member as a memory-mapped array: validated, converted once to a .npy beside the npz, then mapped read-only.

Why convert: the published MPI3D files are 12.7 GB; ``np.load(npz)["images"]`` reads all of it into RAM (dlib does this).
An npz is a zip whose members are .npy files (numpy's NEP 1 format).  We stream the member out of the zip in chunks
(zipfile decompresses deflated members on the fly and checks the CRC at the end), write ``<stem>.<key>.npy`` under a temp
name, check its size, then rename; an interrupted conversion leaves only a temp file, which the next run removes.
"""

import logging
import mmap
import os
import sys
import zipfile
from pathlib import Path

import numpy as np

from submission.data.errors import DatasetError

log = logging.getLogger(__name__)
CHUNK_BYTES = 16 << 20
TEMP_MARKER = ".partial-"


def read_npy_header(stream, source):
    """(shape, fortran_order, dtype, header_bytes) of a .npy stream positioned at its start; DatasetError if it is not one."""
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            raise ValueError(f"format version {version}")
    except (ValueError, EOFError, OSError, zipfile.BadZipFile) as error:
        raise DatasetError(f"{source}: not a readable .npy array ({error}); expected a numpy array file") from None
    return tuple(shape), fortran_order, dtype, stream.tell()


def check_array_header(shape, fortran_order, dtype, source, expected_dtype, image_shape, allowed_counts):
    """DatasetError naming ``source`` unless the array is C-ordered ``expected_dtype`` of shape (N, *image_shape)."""
    if dtype != np.dtype(expected_dtype):
        raise DatasetError(f"{source}: dtype {dtype}; expected {np.dtype(expected_dtype)}")
    if fortran_order or len(shape) != 1 + len(image_shape) or tuple(shape[1:]) != tuple(image_shape):
        raise DatasetError(f"{source}: shape {shape}{' (Fortran order)' if fortran_order else ''}; "
                           f"expected (N, {', '.join(map(str, image_shape))}) in C order")
    if shape[0] not in allowed_counts:
        raise DatasetError(f"{source}: {shape[0]:,} images; expected one of {', '.join(f'{c:,}' for c in allowed_counts)}")


def _progress(total, description):
    """tqdm bar on a terminal, else plain stderr lines every 10% (none for small files): ``update(n)`` and ``close()``."""
    if total < 4 * CHUNK_BYTES:
        return _LogProgress(0, description, quiet=True)
    if sys.stderr.isatty():
        from tqdm import tqdm
        return tqdm(total=total, unit="B", unit_scale=True, desc=description)
    return _LogProgress(total, description)


class _LogProgress:
    def __init__(self, total, description, quiet=False):
        self.total, self.description, self.done, self.next_report = max(total, 1), description, 0, 0.1
        self.quiet = quiet

    def update(self, count):
        self.done += count
        while not self.quiet and self.done / self.total >= self.next_report:
            print(f"{self.description}: {round(self.next_report * 100)}%", file=sys.stderr, flush=True)
            self.next_report += 0.1

    def close(self):
        pass


def _remove_stale_temps(target):
    """Remove temp files of earlier conversions whose process is gone (an interrupted run), never a live one's."""
    for temp in target.parent.glob(target.name + TEMP_MARKER + "*"):
        pid = temp.name.rsplit(TEMP_MARKER, 1)[1]
        try:
            os.kill(int(pid), 0)
            alive = int(pid) != os.getpid()
        except (ValueError, ProcessLookupError):
            alive = False
        except PermissionError:
            alive = True
        if not alive:
            temp.unlink(missing_ok=True)


def convert_npz_member(npz_path, key, target, expected_dtype, image_shape, allowed_counts):
    """Stream ``key`` of ``npz_path`` into the .npy file ``target``; returns the array's shape.  Never holds the array in RAM."""
    npz_path, target = Path(npz_path), Path(target)
    try:
        archive = zipfile.ZipFile(npz_path)
    except (zipfile.BadZipFile, OSError) as error:
        raise DatasetError(f"{npz_path}: not a readable npz ({error}); expected a zip of .npy arrays") from None
    with archive:
        member = key + ".npy"
        if member not in archive.namelist():
            raise DatasetError(f"{npz_path}: keys {[n[:-4] for n in archive.namelist()]}; expected a key {key!r}")
        info = archive.getinfo(member)
        with archive.open(member) as stream:
            shape, fortran_order, dtype, header_bytes = read_npy_header(stream, f"{npz_path}[{key}]")
            check_array_header(shape, fortran_order, dtype, f"{npz_path}[{key}]", expected_dtype, image_shape, allowed_counts)
            expected_bytes = header_bytes + int(np.prod(shape)) * dtype.itemsize
            if info.file_size != expected_bytes:
                raise DatasetError(f"{npz_path}[{key}]: member of {info.file_size:,} bytes; expected {expected_bytes:,} "
                                   f"for shape {shape} (truncated or corrupt file)")
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                _remove_stale_temps(target)
                temp = target.with_name(target.name + TEMP_MARKER + str(os.getpid()))
                out = open(temp, "wb")
            except OSError as error:
                raise DatasetError(f"{target.parent}: cannot write the memory-map cache ({error.strerror or error}); "
                                   f"expected a writable directory (pass cache_dir= to use another)") from None
            progress = _progress(expected_bytes, f"converting {npz_path.name}[{key}] to {target.name}")
            try:
                with out:
                    stream.seek(0)  # the member is itself a .npy file: copy header and data verbatim
                    while True:
                        chunk = stream.read(CHUNK_BYTES)
                        if not chunk:
                            break
                        out.write(chunk)
                        progress.update(len(chunk))
                written = temp.stat().st_size
                if written != expected_bytes:
                    raise DatasetError(f"{npz_path}[{key}]: read {written:,} bytes; expected {expected_bytes:,} "
                                       f"(truncated or corrupt file)")
                os.replace(temp, target)
            except (zipfile.BadZipFile, EOFError, OSError, DatasetError) as error:
                temp.unlink(missing_ok=True)
                if isinstance(error, DatasetError):
                    raise
                raise DatasetError(f"{npz_path}[{key}]: {type(error).__name__}: {error} while converting; "
                                   f"expected an intact npz (truncated or corrupt file?)") from None
            finally:
                progress.close()
    return shape


class MappedImages:
    """A read-only memory map of a uint8 .npy image array, with a bounded resident set.

    Reading a random image faults its pages into this process's RSS, where they would stay, together with the neighbours
    the kernel maps around each fault (readahead, fault-around, large folios).  After ``release_bytes`` of requested reads
    we drop the mapped pages with madvise(MADV_DONTNEED).  KNOWN GAP: on this machine's kernel (6.18, Firecracker VM) the
    bench still measured a peak RSS of 7.5-12 GB on the 12.7 GB file, so the 2 GB goal is not met yet; see bench_data.py.  The kernel's page cache keeps them, so re-reads stay fast, but the
    process's RSS stays bounded however long training samples.
    """

    def __init__(self, npy_path, release_bytes=64 << 20):
        self.path = Path(npy_path)
        with open(self.path, "rb") as handle:
            shape, fortran_order, dtype, header_bytes = read_npy_header(handle, self.path)
            self._map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        self.shape, self.dtype = shape, dtype
        self.array = np.frombuffer(self._map, dtype=dtype, count=int(np.prod(shape)), offset=header_bytes).reshape(shape)
        self.release_bytes = release_bytes
        self._bytes_since_release = 0
        self._image_bytes = int(np.prod(shape[1:])) * dtype.itemsize

    def take(self, indices):
        """A copy of the images at ``indices`` (gathered in C by numpy)."""
        images = self.array[indices]
        self._bytes_since_release += len(indices) * self._image_bytes
        if self._bytes_since_release >= self.release_bytes and hasattr(self._map, "madvise"):
            self._map.madvise(mmap.MADV_DONTNEED)
            self._bytes_since_release = 0
        return images


def mapped_npz_member(npz_path, key, expected_dtype, image_shape, allowed_counts, cache_dir=None):
    """MappedImages of ``key`` in ``npz_path``, converting it first if there is no up-to-date .npy beside it (or in cache_dir)."""
    npz_path = Path(npz_path)
    target = Path(cache_dir or npz_path.parent) / f"{npz_path.stem}.{key}.npy"
    if target.exists() and target.stat().st_mtime >= npz_path.stat().st_mtime:
        with open(target, "rb") as handle:
            shape, fortran_order, dtype, header_bytes = read_npy_header(handle, target)
        complete = target.stat().st_size == header_bytes + int(np.prod(shape)) * dtype.itemsize
        if complete:
            check_array_header(shape, fortran_order, dtype, target, expected_dtype, image_shape, allowed_counts)
            return MappedImages(target)
        log.warning("%s: incomplete cache (%d bytes); converting afresh", target, target.stat().st_size)
    convert_npz_member(npz_path, key, target, expected_dtype, image_shape, allowed_counts)
    return MappedImages(target)
