"""The IDX format of MNIST and Fashion-MNIST (LeCun et al.), gzipped or raw.

A file is a 4-byte big-endian magic number ``0x0000TTDD`` (TT the value type, DD the number of
dimensions), DD big-endian uint32 sizes, then the values in C order. Labels have magic 2049
(uint8, 1-D), images 2051 (uint8, 3-D).
"""
import gzip
import zlib
from pathlib import Path

import numpy as np

from coreaug.errors import UsageError

LABELS_MAGIC = 2049
IMAGES_MAGIC = 2051

# The value types the format defines; multi-byte types are big-endian.
IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


CHUNK = 1 << 24  # bytes decompressed at a time: a file is never read past what its header declares


def _read_at_most(handle, size):
    """Up to `size` bytes of `handle`, read a chunk at a time: a header declaring more than the file
    holds allocates no more than the file gives."""
    parts, got = [], 0
    while got < size:
        part = handle.read(min(CHUNK, size - got))
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def read_idx(path: Path, expected_magic: int) -> np.ndarray:
    """Read an IDX file into a native-endian numpy array.

    Args:
        path: the file, gzipped (recognised by its magic bytes, not its name) or not.
        expected_magic: ``IMAGES_MAGIC`` (2051) or ``LABELS_MAGIC`` (2049); another magic means
            the wrong file was given.

    Raises:
        UsageError: naming the file, if the magic number differs, the sizes the header declares
            do not match the bytes present (a truncated or padded file: read no further than one
            byte past what the header declares, so a small gzip file that unpacks to gigabytes
            costs no more than the declared size), or a gzip stream is damaged.
    """
    with open(path, "rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
    try:
        with (gzip.open if gzipped else open)(path, "rb") as handle:
            return _read_idx(path, handle, expected_magic)
    except (OSError, EOFError, zlib.error) as error:
        if not gzipped:  # a plain file's read error is the OS's, as it was before this reader streamed
            raise
        raise UsageError(f"{path} is a damaged gzip file ({error}); delete it and get it again") \
            from error


def _read_idx(path, handle, expected_magic):
    head = _read_at_most(handle, 4)
    if len(head) < 4:
        raise UsageError(f"{path} is too short ({len(head)} bytes) to be an IDX file")
    magic = int.from_bytes(head, "big")
    if magic != expected_magic:
        raise UsageError(f"{path} has IDX magic number {magic}, expected {expected_magic}: "
                         f"not an IDX {'image' if expected_magic == IMAGES_MAGIC else 'label'} "
                         f"file, or corrupted")
    dtype = np.dtype(IDX_DTYPES[head[2]])
    ndim = head[3]
    sizes = _read_at_most(handle, 4 * ndim)
    if len(sizes) < 4 * ndim:
        raise UsageError(f"{path} is truncated inside its IDX header")
    shape = tuple(int.from_bytes(sizes[4 * i: 4 + 4 * i], "big") for i in range(ndim))
    header_bytes, body_bytes = 4 + 4 * ndim, int(np.prod(shape)) * dtype.itemsize
    body = _read_at_most(handle, body_bytes + 1)  # one byte more: a file longer than declared
    if len(body) != body_bytes:
        holds = f"{header_bytes + len(body)} bytes" if len(body) < body_bytes else "more"
        raise UsageError(f"{path} declares shape {shape} ({header_bytes + body_bytes} bytes) but holds "
                         f"{holds}: truncated or corrupted; delete it and get it again")
    values = np.frombuffer(body, dtype=dtype).reshape(shape)
    # A writable native-endian copy: torch.from_numpy refuses neither, and warns on read-only.
    return np.array(values, dtype=dtype.newbyteorder("="))
