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


def read_file_bytes(path: Path) -> bytes:
    """The file's content, decompressed if it is gzip (recognised by its magic bytes, not its
    name). A damaged gzip stream raises ``UsageError`` naming the file."""
    with open(path, "rb") as handle:
        raw = handle.read()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:
        raise UsageError(f"{path} is a damaged gzip file ({error}); delete it and get it again") \
            from error


def read_idx(path: Path, expected_magic: int) -> np.ndarray:
    """Read an IDX file into a native-endian numpy array.

    Args:
        path: the file, gzipped or not.
        expected_magic: ``IMAGES_MAGIC`` (2051) or ``LABELS_MAGIC`` (2049); another magic means
            the wrong file was given.

    Raises:
        UsageError: naming the file, if the magic number differs, or the sizes the header
            declares do not match the bytes present (a truncated or padded file).
    """
    data = read_file_bytes(path)
    if len(data) < 4:
        raise UsageError(f"{path} is too short ({len(data)} bytes) to be an IDX file")
    magic = int.from_bytes(data[:4], "big")
    if magic != expected_magic:
        raise UsageError(f"{path} has IDX magic number {magic}, expected {expected_magic}: "
                         f"not an IDX {'image' if expected_magic == IMAGES_MAGIC else 'label'} "
                         f"file, or corrupted")
    dtype = np.dtype(IDX_DTYPES[data[2]])
    ndim = data[3]
    header_bytes = 4 + 4 * ndim
    if len(data) < header_bytes:
        raise UsageError(f"{path} is truncated inside its IDX header")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected_bytes = header_bytes + int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected_bytes:
        raise UsageError(f"{path} declares shape {shape} ({expected_bytes} bytes) but holds "
                         f"{len(data)} bytes: truncated or corrupted; delete it and get it again")
    values = np.frombuffer(data, dtype=dtype, offset=header_bytes).reshape(shape)
    # A writable native-endian copy: torch.from_numpy refuses neither, and warns on read-only.
    return np.array(values, dtype=dtype.newbyteorder("="))
