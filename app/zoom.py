"""Zoom levels of the image view: "fit" (the whole image, as large as the view allows) or a scale.

A scale counts image pixels per screen pixel (device pixels, so 100 % shows every pixel of the
image once, on a Retina screen as on any other). Zoom In/Out step through the usual levels of
image viewers; pinch and Ctrl+wheel zoom smoothly between them.
"""

from __future__ import annotations

STEPS = (0.05, 0.1, 0.125, 1 / 6, 0.25, 1 / 3, 0.5, 2 / 3, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0)
MIN_SCALE, MAX_SCALE = STEPS[0], STEPS[-1]
WHEEL_NOTCH = 1.25  # one wheel notch (120 eighths of a degree) with Ctrl zooms by this factor


def clamp(scale: float) -> float:
    return min(MAX_SCALE, max(MIN_SCALE, scale))


def step_in(scale: float) -> float:
    """The next level above `scale` (levels in between snap up to the next one)."""
    return next((s for s in STEPS if s > scale * 1.001), MAX_SCALE)


def step_out(scale: float) -> float:
    """The next level below `scale`."""
    return next((s for s in reversed(STEPS) if s < scale / 1.001), MIN_SCALE)


def wheel_factor(angle_delta: int) -> float:
    """The zoom factor of a Ctrl+wheel turn by `angle_delta` (eighths of a degree; 120 a notch)."""
    return WHEEL_NOTCH ** (angle_delta / 120)


def percent(scale: float) -> str:
    """'100%', '33%', '6.3%': whole percents, one decimal below 10 %."""
    value = scale * 100
    return f"{value:.1f}%" if value < 9.95 else f"{value:.0f}%"
