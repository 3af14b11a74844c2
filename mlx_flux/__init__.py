"""mlx-flux: FLUX.1 text-to-image, native on MLX."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["FluxPipeline", "GenerationResult", "StepEvent", "__version__"]


def __getattr__(name: str):
    # The pipeline pulls in every model; keep `import mlx_flux.tokenizers` light.
    if name in ("FluxPipeline", "GenerationResult", "StepEvent"):
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'mlx_flux' has no attribute {name!r}")
