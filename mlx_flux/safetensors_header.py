"""Reading a safetensors file's JSON header without MLX: what the weight loader, the LoRA
reader and the file-kind check all start from. Each turns `HeaderError` into its own one-line
message (a weight file, a LoRA, a model the person picked)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

# Bytes per element of each safetensors dtype (a header names them).
DTYPE_SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
               "U16": 2, "U32": 4, "U64": 8, "BOOL": 1}
MAX_HEADER = 100_000_000  # bytes; a larger length field means the file is not a safetensors file


class HeaderError(ValueError):
    """The file is not a (complete) safetensors file; the message says why, in a few words."""


def read_raw_header(path: str | Path) -> tuple[dict, int]:
    """The header object (`__metadata__` included) and its length in bytes.

    OSError (missing, unreadable) passes through for the caller to word; anything that is not
    a safetensors header raises HeaderError.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise HeaderError("too short")
        (n,) = struct.unpack("<Q", raw)
        if n > size - 8 or n > MAX_HEADER:
            raise HeaderError("bad header length")
        try:
            header = json.loads(f.read(n))
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise HeaderError("unreadable header") from None
    if not isinstance(header, dict):
        raise HeaderError("its header is not a JSON object")
    return header, n
