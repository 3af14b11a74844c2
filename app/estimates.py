"""How long the rest of a run takes: the steps left at the pace so far, plus the VAE decode.

The decode reports no steps, so its time is remembered per image size from the runs before;
until one was measured at a size, a chunk's decode counts as long as one of its steps (the
FLUX VAE at a given size takes about that long on Apple silicon).
"""

from __future__ import annotations

import math

DECODE_STEPS = 1.0  # a chunk's decode in steps of that chunk, before a decode was measured


class DecodeTimes:
    """The decode time of one image, per width x height, as last measured."""

    def __init__(self) -> None:
        self._per_image: dict[tuple[int, int], float] = {}

    def note(self, width: int, height: int, seconds: float | None) -> None:
        if seconds is not None and seconds >= 0 and width > 0 and height > 0:
            self._per_image[(width, height)] = float(seconds)

    def per_image(self, width: int, height: int) -> float | None:
        return self._per_image.get((width, height))

    def left(self, width: int, height: int, images: int, chunk: int, step_seconds: float) -> float:
        """The decodes still to come for `images` images made `chunk` at a time, at a pace of
        `step_seconds` per step (the fallback when this size has no measured decode)."""
        if images <= 0:
            return 0.0
        known = self.per_image(width, height)
        if known is not None:
            return known * images
        return DECODE_STEPS * step_seconds * math.ceil(images / max(1, chunk))
