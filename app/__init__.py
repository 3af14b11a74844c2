"""The mlx-flux desktop app: a PySide6 window over one background worker that owns the engine.

Widgets never import mlx; every model load and generation runs on the worker's thread
(`app.worker`), and the window only sees typed signals carrying Qt images and plain data.
"""

APP_NAME = "mlx-flux"  # QStandardPaths folder name and QSettings application name
APP_DISPLAY_NAME = "MLX Flux"  # what a person sees in the title bar and menus

from app import qtfix as _qtfix

_qtfix.apply()  # before any widget code runs: see qtfix for the PySide defect it guards against
