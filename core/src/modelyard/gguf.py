"""A small reader for the header of a GGUF file: metadata key/values and tensor infos (used by the
core to launch a GGUF without a catalog entry, and by the llama.cpp plugin).

GGUF (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md) is: magic ``GGUF``, a version,
tensor and key/value counts, the key/values, the tensor infos (name, shape, ggml type, offset),
then the aligned tensor data. Reading only the header is enough to estimate memory and to refuse a
file that is not a GGUF or is truncated before llama.cpp sees it (llama.cpp's own failure is an
opaque "Failed to init server", and some loaders abort the process).

The file is memory-mapped and parsed with ``struct.unpack_from``; big arrays (the tokenizer's
vocabulary) are skipped and kept as their length only.
"""

from __future__ import annotations

import itertools
import math
import mmap
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelyard.errors import LaunchError

MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
# Arrays longer than this are kept as their length only (vocabularies, merges, scores).
_MAX_KEPT_ARRAY = 4096

# ggml type id -> (name, elements per block, bytes per block), from ggml.h / ggml.c type traits.
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4),
    1: ("F16", 1, 2),
    2: ("Q4_0", 32, 18),
    3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24),
    8: ("Q8_0", 32, 34),
    9: ("Q8_1", 32, 36),
    10: ("Q2_K", 256, 84),
    11: ("Q3_K", 256, 110),
    12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210),
    15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66),
    17: ("IQ2_XS", 256, 74),
    18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50),
    20: ("IQ4_NL", 32, 18),
    21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82),
    23: ("IQ4_XS", 256, 136),
    24: ("I8", 1, 1),
    25: ("I16", 1, 2),
    26: ("I32", 1, 4),
    27: ("I64", 1, 8),
    28: ("F64", 1, 8),
    29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2),
    34: ("TQ1_0", 256, 54),
    35: ("TQ2_0", 256, 66),
    39: ("MXFP4", 32, 17),
}

# GGUF value types: id -> struct format (scalars); 8 = string, 9 = array.
_SCALARS = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}
_STRING, _ARRAY = 8, 9

_LAYER = re.compile(r"^blk\.(\d+)\.")


class GGUFError(LaunchError):
    """The file is not a usable GGUF; the message names the file and what is wrong with it."""


@dataclass(frozen=True)
class ArrayInfo:
    """A metadata array too long to keep: its element type and length."""

    type: int
    length: int


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    type: int
    offset: int  # relative to the start of the data section
    nbytes: int

    @property
    def layer(self) -> int | None:
        """The repeating block this tensor belongs to (``blk.N.``), or None (embeddings, output)."""
        found = _LAYER.match(self.name)
        return int(found.group(1)) if found else None


@dataclass
class GGUFFile:
    path: Path
    version: int
    metadata: dict[str, Any]
    tensors: list[TensorInfo]
    data_offset: int
    file_size: int

    @property
    def tensor_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    def get(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(key, default)


def _tensor_nbytes(shape: tuple[int, ...], ggml_type: int) -> int | None:
    traits = GGML_TYPES.get(ggml_type)
    if traits is None:
        return None
    _, block, size = traits
    return math.prod(shape) // block * size


class _Cursor:
    """Reads little- or big-endian GGUF values from a buffer, failing with the file's name."""

    def __init__(self, buf: mmap.mmap | bytes, path: Path, endian: str) -> None:
        self.buf, self.path, self.endian, self.pos = buf, path, endian, 0

    def take(self, fmt: str) -> Any:
        size = struct.calcsize(self.endian + fmt)
        if self.pos + size > len(self.buf):
            raise GGUFError(
                f"{self.path} is truncated: its GGUF header ends early (at byte {self.pos}); download it again"
            )
        (value,) = struct.unpack_from(self.endian + fmt, self.buf, self.pos)
        self.pos += size
        return value

    def string(self) -> str:
        length = self.take("Q")
        if self.pos + length > len(self.buf):
            raise GGUFError(
                f"{self.path} is truncated: its GGUF header ends early (at byte {self.pos}); download it again"
            )
        raw = bytes(self.buf[self.pos : self.pos + length])
        self.pos += length
        return raw.decode("utf-8", errors="replace")

    def value(self, vtype: int) -> Any:
        if vtype in _SCALARS:
            return self.take(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            item_type, length = self.take("I"), self.take("Q")
            if length > _MAX_KEPT_ARRAY:
                self.skip_array(item_type, length)
                return ArrayInfo(item_type, length)
            return [self.value(item_type) for _ in range(length)]
        raise GGUFError(
            f"{self.path} has an unknown GGUF value type {vtype} at byte {self.pos}: it is corrupt or from a newer GGUF version"
        )

    def skip_array(self, item_type: int, length: int) -> None:
        if item_type in _SCALARS:
            self.pos += struct.calcsize(self.endian + _SCALARS[item_type]) * length
        elif item_type == _STRING:
            for _ in range(length):
                skip = self.take("Q")  # read first: `pos += take()` would add to the stale pos
                self.pos += skip
        else:
            for _ in range(length):
                self.value(item_type)
        if self.pos > len(self.buf):
            raise GGUFError(
                f"{self.path} is truncated: its GGUF header ends early; download it again"
            )


def read_gguf(path: str | Path) -> GGUFFile:
    """Read the header of the GGUF at ``path``; raise ``GGUFError`` when it is not a complete GGUF."""
    path = Path(path)
    if not path.is_file():
        raise GGUFError(f"no GGUF file at {path}: the path does not exist or is a directory")
    size = path.stat().st_size
    if size < 24:
        raise GGUFError(f"{path} is not a GGUF file: it has only {size} bytes")
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        if buf[:4] != MAGIC:
            raise GGUFError(
                # Never quote the bytes: an error must not carry a file's contents to a caller.
                f"{path} is not a GGUF file (it does not start with the GGUF magic): "
                "llama.cpp serves GGUF files only; convert the model or launch it with another engine"
            )
        endian = "<"
        version = struct.unpack_from("<I", buf, 4)[0]
        if version > 0xFFFF:  # a big-endian file reads as a huge little-endian number
            endian, version = ">", struct.unpack_from(">I", buf, 4)[0]
        if version < 2:
            raise GGUFError(
                f"{path} is GGUF version {version}, which llama.cpp no longer reads: convert it again"
            )
        cursor = _Cursor(buf, path, endian)
        cursor.pos = 8
        n_tensors, n_kv = cursor.take("Q"), cursor.take("Q")
        metadata: dict[str, Any] = {}
        for _ in range(n_kv):
            key = cursor.string()
            metadata[key] = cursor.value(cursor.take("I"))
        raw_tensors = []
        for _ in range(n_tensors):
            name = cursor.string()
            n_dims = cursor.take("I")
            shape = tuple(cursor.take("Q") for _ in range(n_dims))
            raw_tensors.append((name, shape, cursor.take("I"), cursor.take("Q")))
        alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT) or DEFAULT_ALIGNMENT
        data_offset = -(-cursor.pos // alignment) * alignment
    tensors = _sized(raw_tensors, size - data_offset)
    end = max((t.offset + t.nbytes for t in tensors), default=0)
    if data_offset + end > size:
        raise GGUFError(
            f"{path} is truncated: its tensors need {data_offset + end} bytes but the file has {size}; "
            "the download was probably interrupted: delete the file and download it again"
        )
    return GGUFFile(path, version, metadata, tensors, data_offset, size)


def _sized(raw: list[tuple[str, tuple[int, ...], int, int]], data_size: int) -> list[TensorInfo]:
    """Tensor infos with byte sizes: from the type's block layout, or, for a type this reader does
    not know, the distance to the next tensor (or to the end of the file for the last one)."""
    by_offset = sorted(raw, key=lambda item: item[3])
    next_offset = {item[3]: following[3] for item, following in itertools.pairwise(by_offset)}
    tensors = []
    for name, shape, ggml_type, offset in raw:
        nbytes = _tensor_nbytes(shape, ggml_type)
        if nbytes is None:
            nbytes = max(0, next_offset.get(offset, data_size) - offset)
        tensors.append(TensorInfo(name, shape, ggml_type, offset, nbytes))
    return tensors
