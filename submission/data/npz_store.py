"""An npz member as an on-disk array: validated, converted once to a .npy beside the npz, then read row by row on demand.

Why convert: the published MPI3D files are 12.7 GB; ``np.load(npz)["images"]`` reads all of it into RAM (dlib does this),
and a deflated zip member cannot be read at random offsets.
An npz is a zip whose members are .npy files (numpy's NEP 1 format).  We stream the member out of the zip in chunks
(zipfile decompresses deflated members on the fly and checks the CRC at the end), write ``<stem>.<key>.npy`` under a temp
name, check its size, then rename; an interrupted conversion leaves only a temp file, which the next run removes.
"""

import io
import logging
import os
import threading
import zipfile
from pathlib import Path

import numpy as np

from submission.data.errors import DatasetError

log = logging.getLogger(__name__)
CHUNK_BYTES = 16 << 20


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


def _progress(total_bytes, description):
    """The kit's one progress display (``submission.progress``), counting bytes."""
    from submission.progress import progress
    return progress(total_bytes, description, unit="B")


def _writable_cache(target):
    """``target``'s directory exists and is writable (else one line), and the temporaries of killed conversions of
    ``target`` are gone (a live process's are kept: ``files.remove_dead_temporaries``)."""
    from submission.files import remove_dead_temporaries
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if not os.access(target.parent, os.W_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as error:
        raise DatasetError(f"{target.parent}: cannot write the .npy cache ({error.strerror or error}); "
                           f"expected a writable directory (pass cache_dir= to use another)") from None
    remove_dead_temporaries(str(target))


def _write_checked(target, write, expected_bytes, source, what):
    """``write(file)`` into ``target`` through the kit's one atomic write; the temporary must hold ``expected_bytes``
    or nothing replaces ``target``. Read errors become one DatasetError line naming ``source``."""
    from submission.files import atomic_write

    def check(temporary):
        written = os.path.getsize(temporary)
        if written != expected_bytes:
            raise DatasetError(f"{source}: {what} {written:,} bytes; expected {expected_bytes:,} "
                               f"(truncated or corrupt file)")
    try:
        atomic_write(str(target), write, check)
    except DatasetError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError) as error:
        raise DatasetError(f"{source}: {type(error).__name__}: {error} while converting; "
                           f"expected an intact file (truncated or corrupt?)") from None


class UnconvertedImages:
    """The store of a dataset opened with ``check_only=True`` (``get_dataset(..., check_only=True)``): its file was
    checked (headers, shapes, sizes, label order) and nothing converted; it knows its shape and reads no images. The
    pipeline validates a job this way before it writes anything; the stage that trains converts, with its progress."""

    def __init__(self, shape, source):
        self.shape, self.source = tuple(int(n) for n in shape), source

    def take(self, indices):
        raise DatasetError(f"{self.source}: opened to be checked only (not converted); expected a dataset opened "
                           f"without check_only to read images")

    read_all = take


def _npz_member_header(archive, npz_path, key, expected_dtype, image_shape, allowed_counts):
    """(shape, the member's byte count) of ``key`` in the open ``archive``, checked without reading its data."""
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
    return shape, expected_bytes


def _open_npz(npz_path):
    try:
        return zipfile.ZipFile(npz_path)
    except (zipfile.BadZipFile, OSError) as error:
        raise DatasetError(f"{npz_path}: not a readable npz ({error}); expected a zip of .npy arrays") from None


def convert_npz_member(npz_path, key, target, expected_dtype, image_shape, allowed_counts):
    """Stream ``key`` of ``npz_path`` into the .npy file ``target``; returns the array's shape.  Never holds the array in RAM."""
    npz_path, target = Path(npz_path), Path(target)
    with _open_npz(npz_path) as archive:
        shape, expected_bytes = _npz_member_header(archive, npz_path, key, expected_dtype, image_shape, allowed_counts)
        _writable_cache(target)
        progress = _progress(expected_bytes, f"converting {npz_path.name}[{key}] to {target.name}")

        def copy(out):
            with archive.open(key + ".npy") as stream:   # the member is itself a .npy file: header and data verbatim
                while True:
                    chunk = stream.read(CHUNK_BYTES)
                    if not chunk:
                        break
                    out.write(chunk)
                    progress.update(len(chunk))
        try:
            _write_checked(target, copy, expected_bytes, f"{npz_path}[{key}]", "read")
        finally:
            progress.close()
    return shape


class DiskImages:
    """A uint8 .npy image array read from disk on demand with positional reads; the process never maps or holds the file.

    Why not a memory map: pages of a mapped file that the process touches count toward its RSS, and on this machine's kernel
    (6.18, Firecracker VM) readahead, fault-around and large folios made a random-batch sampler's RSS reach 7.5-12 GB on the
    12.7 GB file even with periodic madvise(MADV_DONTNEED).  ``take`` instead sorts the requested rows, merges runs of
    consecutive rows, and reads each run with one ``os.preadv`` into a per-thread staging buffer that is reused across calls,
    then gathers the rows back into the requested order (repeats read once).  The kernel's page cache still holds recently
    read pages, so re-reads stay fast, but none of it is this process's memory: RSS grows only by a batch.  Positional
    reads carry no file offset, so threads and forked DataLoader workers can share the descriptor.
    """

    def __init__(self, npy_path):
        self.path = Path(npy_path)
        with open(self.path, "rb") as handle:
            shape, fortran_order, dtype, header_bytes = read_npy_header(handle, self.path)
        if fortran_order:
            raise DatasetError(f"{self.path}: Fortran-ordered array; expected C order")
        self.shape, self.dtype, self._header_bytes = shape, dtype, header_bytes
        self._row_shape = tuple(shape[1:])
        self._row_bytes = int(np.prod(self._row_shape, dtype=np.int64)) * dtype.itemsize
        self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        self._local = threading.local()

    def __len__(self):
        return self.shape[0]

    def close(self):
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self):
        self.close()

    def __getstate__(self):  # picklable (spawned DataLoader workers): reopen the file on the other side
        return {"path": self.path}

    def __setstate__(self, state):
        self.__init__(state["path"])

    def _read_into(self, view, offset):
        """Fill the writable byte memoryview ``view`` from file offset ``offset`` (loops over short reads)."""
        done, total = 0, len(view)
        while done < total:
            count = os.preadv(self._fd, [view[done:]], offset + done)
            if count == 0:
                raise DatasetError(f"{self.path}: file ends at byte {offset + done:,}; expected {offset + total:,} "
                                   f"(truncated since it was opened?)")
            done += count

    def _staging(self, rows):
        """This thread's reusable buffer of at least ``rows`` rows (grown by doubling, never shrunk)."""
        buffer = getattr(self._local, "buffer", None)
        if buffer is None or len(buffer) < rows:
            buffer = np.empty((max(rows, 2 * (0 if buffer is None else len(buffer))), *self._row_shape), self.dtype)
            self._local.buffer = buffer
        return buffer

    def read_rows(self, start, stop, out=None):
        """Rows ``start:stop`` (contiguous in the file) as a fresh array, or into ``out`` (C-contiguous, right shape)."""
        if out is None:
            out = np.empty((stop - start, *self._row_shape), self.dtype)
        self._read_into(memoryview(out.reshape(-1).view(np.uint8)), self._header_bytes + start * self._row_bytes)
        return out

    def read_all(self, chunk_rows=None):
        """The whole array in RAM (the opt-in ``memory``/``cuda`` storages), read in chunks into one allocation."""
        out = np.empty(self.shape, self.dtype)
        chunk_rows = chunk_rows or max(1, CHUNK_BYTES // max(self._row_bytes, 1))
        for start in range(0, self.shape[0], chunk_rows):
            self.read_rows(start, min(start + chunk_rows, self.shape[0]), out[start:start + chunk_rows])
        return out

    def take(self, indices):
        """A fresh array of the rows at ``indices`` (any int array shape, in [0, N)), like ``array[indices]``."""
        indices = np.asarray(indices)
        flat = indices.reshape(-1).astype(np.int64, copy=False)
        if flat.size == 0:
            return np.empty((*indices.shape, *self._row_shape), self.dtype)
        if flat.min() < 0 or flat.max() >= self.shape[0]:
            bad = flat[(flat < 0) | (flat >= self.shape[0])][0]
            raise IndexError(f"{self.path}: row {bad} out of range for {self.shape[0]:,} rows")
        unique, inverse = np.unique(flat, return_inverse=True)
        buffer = self._staging(len(unique))
        # Runs of consecutive rows: [run_starts[k], run_stops[k]) in ``unique`` positions, each one contiguous file range.
        breaks = np.flatnonzero(np.diff(unique) != 1) + 1
        run_starts = np.concatenate(([0], breaks)).tolist()
        run_stops = np.concatenate((breaks, [len(unique)])).tolist()
        raw = memoryview(buffer.reshape(-1).view(np.uint8))
        row_bytes, header_bytes, first_rows = self._row_bytes, self._header_bytes, unique[run_starts].tolist()
        for begin, end, row in zip(run_starts, run_stops, first_rows):
            self._read_into(raw[begin * row_bytes:end * row_bytes], header_bytes + row * row_bytes)
        return buffer[inverse.reshape(indices.shape)]


def open_npz_member(npz_path, key, expected_dtype, image_shape, allowed_counts, cache_dir=None, check_only=False):
    """DiskImages of ``key`` in ``npz_path``, converting it first if there is no up-to-date .npy beside it (or in
    cache_dir); with ``check_only``, UnconvertedImages after checking the member's header."""
    npz_path = Path(npz_path)
    target = cache_path(npz_path, key, cache_dir)
    cached = cached_npy(target, npz_path, expected_dtype, image_shape, allowed_counts)
    if cached is not None:
        return cached
    if check_only:
        with _open_npz(npz_path) as archive:
            shape, _ = _npz_member_header(archive, npz_path, key, expected_dtype, image_shape, allowed_counts)
        return UnconvertedImages(shape, f"{npz_path}[{key}]")
    convert_npz_member(npz_path, key, target, expected_dtype, image_shape, allowed_counts)
    return DiskImages(target)


def cache_path(source, key, cache_dir=None):
    """Where the .npy conversion of member ``key`` of ``source`` lives: ``<stem>.<key>.npy`` beside it or in cache_dir."""
    return Path(cache_dir or Path(source).parent) / f"{Path(source).stem}.{key}.npy"


def cached_npy(target, source, expected_dtype, image_shape, allowed_counts):
    """DiskImages of ``target`` when it is a complete conversion at least as new as ``source``; None means convert afresh.

    ``image_shape`` None accepts any row shape (the caller checks it).
    """
    target = Path(target)
    if not target.exists() or target.stat().st_mtime < Path(source).stat().st_mtime:
        return None
    with open(target, "rb") as handle:
        shape, fortran_order, dtype, header_bytes = read_npy_header(handle, target)
    if target.stat().st_size != header_bytes + int(np.prod(shape)) * dtype.itemsize:
        log.warning("%s: incomplete cache (%d bytes); converting afresh", target, target.stat().st_size)
        return None
    check_array_header(shape, fortran_order, dtype, target, expected_dtype,
                       shape[1:] if image_shape is None else image_shape, allowed_counts)
    return DiskImages(target)


def write_npy_atomically(target, shape, dtype, chunks, source):
    """Write a C-ordered .npy of ``shape`` whose rows come from ``chunks`` (arrays, in order) to ``target``; returns it.

    Written under a temp name, its size checked, then renamed: a failure (a corrupt ``source``, a full disk) removes the
    temp file and leaves nothing half-written.  ``source`` names the input in error messages.
    """
    target, dtype = Path(target), np.dtype(dtype)
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(shape)}
    _writable_cache(target)
    data_bytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    progress = _progress(data_bytes, f"converting {source} to {target.name}")

    def write(out):
        np.lib.format.write_array_header_1_0(out, header)
        for chunk in chunks:
            out.write(np.ascontiguousarray(chunk, dtype=dtype).tobytes())
            progress.update(chunk.nbytes)
    header_size = io.BytesIO()
    np.lib.format.write_array_header_1_0(header_size, header)
    try:
        _write_checked(target, write, header_size.tell() + data_bytes, source, "wrote")
    finally:
        progress.close()
    return target
