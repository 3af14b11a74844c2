"""Facts about this computer that decide what it can run: memory, and free disk where models go.

The precision advice is the memory rule the README gives: the FLUX.1 transformer is 12 billion
parameters (24 GB in bf16) and T5-XXL another 9.5 GB, so full precision wants about 40 GB while
generating; 8-bit about half that; 4-bit fits a 16 GB Mac. The rule is for Apple silicon's unified
memory; on other systems (MLX on the CPU) the app keeps full precision.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

IS_MAC = sys.platform == "darwin"
FULL_NEEDS_GB = 40  # bf16 transformer + T5 + working memory while generating
EIGHT_BIT_NEEDS_GB = 22
FOUR_BIT_NEEDS_GB = 12


def physical_memory() -> int | None:
    """Bytes of RAM (on Apple silicon: the unified memory the GPU shares); None if unknown."""
    if sys.platform == "darwin":
        try:
            out = subprocess.run(["sysctl", "-n", "hw.memsize"], capture_output=True, text=True, timeout=2)
            return int(out.stdout.strip())
        except (OSError, ValueError, subprocess.SubprocessError):
            pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def free_disk(path: Path) -> int | None:
    """Free bytes on the disk holding `path` (its nearest existing parent); None if unknown."""
    path = Path(path)
    while not path.exists() and path.parent != path:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


@dataclass(frozen=True)
class Precision:
    bits: int | None  # 4, 8, or None for full precision (bf16)
    reason: str  # one line for the UI

    @property
    def label(self) -> str:
        return "full (bf16)" if self.bits is None else f"{self.bits}-bit"


def recommended_precision(memory: int | None = None) -> Precision:
    """The precision this Mac can run comfortably, with the reason in words. Elsewhere MLX runs
    on the CPU, where quantized matmuls are many times slower than float32: full precision."""
    if not IS_MAC and memory is None:
        return Precision(None, "full precision: MLX runs on the CPU here, where quantized weights are much slower")
    memory = physical_memory() if memory is None else memory
    if not memory:
        return Precision(8, "8-bit: this Mac's memory size is unknown; 8-bit needs about "
                            f"{EIGHT_BIT_NEEDS_GB} GB")
    have = round(memory / 2**30)  # as Apple sells it: 16, 32, 64 GB
    if have >= 64:
        return Precision(None, f"full (bf16): this Mac has {have} GB of memory; full precision needs about "
                               f"{FULL_NEEDS_GB} GB")
    if have > 16:
        return Precision(8, f"8-bit: this Mac has {have} GB of memory; full precision needs about "
                            f"{FULL_NEEDS_GB} GB")
    return Precision(4, f"4-bit: this Mac has {have} GB of memory; 8-bit needs about {EIGHT_BIT_NEEDS_GB} GB")
