"""Packaging: quick checks of the sources (entry dispatch, icons, no `packaging` shadowing), then
the frozen app as a user gets it: packaging/build.sh builds the bundle, and it runs with
nothing but the bundle (no Python environment on PATH, no PYTHONPATH, outside the repo).

The build takes a few minutes from scratch (it makes its own venv under build/); a second
run reuses that venv and only refreezes.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
BUILD_SH = ROOT / "packaging" / "build.sh"

def _slow(test):
    """Tests of the built bundle: slow (they need build.sh), and only where it builds."""
    test = pytest.mark.slow(test)
    return pytest.mark.skipif(sys.platform not in ("linux", "darwin"),
                              reason="the bundle is built on Linux and macOS")(test)

# What Qt prints when a plugin is missing or cannot be loaded from the bundle.
QT_PLUGIN_ERRORS = re.compile(
    r"could not (find|load) the qt platform plugin|no qt platform plugin could be initialized"
    r"|qt\.qpa\.plugin|cannot load library|failed to start because|QFactoryLoader"
    r"|Traceback|ModuleNotFoundError|ImportError",
    re.IGNORECASE,
)


# --- quick checks of the packaging sources ----------------------------------------------------

def test_packaging_folder_does_not_shadow_the_packaging_library():
    assert not (ROOT / "packaging" / "__init__.py").exists()
    proc = subprocess.run([sys.executable, "-c", "import packaging.version as v; print(v.__file__)"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()).parent.parent != ROOT


def test_icons_are_generated_at_every_size():
    res = ROOT / "resources"
    with Image.open(res / "icon.png") as img:
        assert img.size == (1024, 1024) and img.mode == "RGBA"
        assert img.getpixel((0, 0))[3] == 0 and img.getpixel((512, 512))[3] == 255  # rounded shape, opaque body
    for n in (16, 32, 64, 128, 256, 512):
        with Image.open(res / f"icon_{n}.png") as img:
            assert img.size == (n, n)
    with Image.open(res / "icon.icns") as img:
        assert img.format == "ICNS"
    assert (res / "make_icons.py").is_file()


def _load_entry():
    spec = importlib.util.spec_from_file_location("mlxflux_frozen_entry", ROOT / "packaging" / "entry.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("argv", [["generate", "--model", "m"], ["info", "x.png"], ["download", "m"],
                                  ["quantize", "m", "--bits", "4"], ["--help"], ["--version"]])
def test_entry_sends_subcommands_to_the_cli(monkeypatch, argv):
    import app.main
    import mlx_flux.cli

    calls = []
    monkeypatch.setattr(mlx_flux.cli, "main", lambda args=None: calls.append(("cli", args)) or 0)
    monkeypatch.setattr(app.main, "main", lambda *a, **k: calls.append(("gui", None)) or 0)
    assert _load_entry().main(argv) == 0
    assert calls == [("cli", argv)]


@pytest.mark.parametrize("argv", [[], ["--model", "/m", "--data-dir", "/d"], ["-psn_0_1234"]])
def test_entry_opens_the_gui_otherwise(monkeypatch, argv):
    import app.main
    import mlx_flux.cli

    calls = []
    monkeypatch.setattr(mlx_flux.cli, "main", lambda args=None: calls.append(("cli", args)) or 0)
    monkeypatch.setattr(app.main, "main", lambda *a, **k: calls.append(("gui", list(sys.argv[1:]))) or 0)
    monkeypatch.setattr(sys, "argv", ["mlx-flux", *argv])
    assert _load_entry().main() == 0
    assert calls == [("gui", [a for a in argv if not a.startswith("-psn_")])]


# --- the built bundle ----------------------------------------------------------------------------

def _version() -> str:
    text = (ROOT / "pyproject.toml").read_text("utf-8")
    return re.search(r'(?m)^version\s*=\s*"([^"]+)"', text).group(1)


def _bare_env(home: Path, **extra: str) -> dict[str, str]:
    """A user's environment: system PATH only, no Python variables, a throw-away home and HF cache."""
    env = {
        "PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HF_HOME": str(home / "hf"),
        "HF_HUB_OFFLINE": "1",
        "XDG_RUNTIME_DIR": str(home / "runtime"),
    }
    (home / "runtime").mkdir(parents=True, exist_ok=True, mode=0o700)
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def bundle_exe() -> Path:
    """Build the bundle with build.sh exactly as documented; its last stdout line is the executable."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
    # An active venv's bin/ must not decide which Python builds the bundle.
    venv_bin = str(Path(sys.prefix) / "bin")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    env["MLXFLUX_DMG"] = "0"  # macOS: the app is enough to test
    started = time.monotonic()
    proc = subprocess.run(["bash", str(BUILD_SH)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=45 * 60)
    assert proc.returncode == 0, f"build.sh failed ({proc.returncode}):\n{proc.stderr[-6000:]}"
    lines = proc.stdout.strip().splitlines()
    assert lines, f"build.sh printed nothing on stdout:\n{proc.stderr[-3000:]}"
    exe = Path(lines[-1])
    assert exe.is_file() and os.access(exe, os.X_OK), f"last line is not an executable: {lines[-1]!r}"
    print(f"\nbundle built in {time.monotonic() - started:.0f}s: {exe}")
    return exe


def _bundle_dir(exe: Path) -> Path:
    # Linux: dist/mlx-flux/mlx-flux; macOS: dist/MLX Flux.app/Contents/MacOS/mlx-flux
    return exe.parents[2] if exe.parent.name == "MacOS" else exe.parent


def _size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink()) / 2**20


@_slow
def test_bundle_is_lean(bundle_exe):
    root = _bundle_dir(bundle_exe)
    names = {p.name for p in root.rglob("*")}
    for unwanted in ("torch", "diffusers", "transformers", "tkinter", "QtWebEngineCore.abi3.so",
                     "libQt6WebEngineCore.so.6", "libQt6Network.so.6", "libQt6Qml.so.6"):
        assert unwanted not in names, f"{unwanted} should not be in the bundle"
    assert not list(root.rglob("mlx/include")), "MLX's C++ headers should not be in the bundle"
    size = _size_mb(root)
    print(f"\nbundle size: {size:.0f} MiB ({root})")
    # ~260 MiB on Linux (Qt + ICU, NumPy's OpenBLAS, MLX, Python); a framework sneaking in
    # (torch alone is ~700 MiB) must fail loudly.
    assert size < 400, f"bundle grew to {size:.0f} MiB"


@_slow
def test_bundle_has_mlx_and_qt_plugins(bundle_exe):
    root = _bundle_dir(bundle_exe)
    libs = [p.name for p in root.rglob("libmlx.*")]
    assert libs, "libmlx missing"
    platforms = {p.name for p in root.rglob("platforms/*")}
    if sys.platform == "darwin":
        assert "libqcocoa.dylib" in platforms
        assert list(root.rglob("mlx/lib/mlx.metallib")), "MLX's Metal kernels missing"
    else:
        assert {"libqxcb.so", "libqoffscreen.so", "libqwayland.so"} <= platforms, platforms


@_slow
def test_frozen_cli_version_and_help(bundle_exe, tmp_path):
    env = _bare_env(tmp_path)
    proc = subprocess.run([str(bundle_exe), "--version"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert _version() in proc.stdout
    proc = subprocess.run([str(bundle_exe), "--help"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "generate" in proc.stdout


@_slow
def test_frozen_generate_writes_png(bundle_exe, tiny_schnell, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    assert ROOT not in work.parents
    proc = subprocess.run(
        [str(bundle_exe), "generate", "--model", str(tiny_schnell), "--prompt", "a lighthouse at dusk",
         "--width", "64", "--height", "64", "--steps", "2", "--seed", "7", "--output", "out.png"],
        cwd=work, env=_bare_env(tmp_path / "home"), capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    out = work / "out.png"
    assert out.is_file(), proc.stderr
    with Image.open(out) as img:
        img.load()
        assert img.format == "PNG"
        assert img.size == (64, 64)
        assert img.mode == "RGB"
        assert "a lighthouse at dusk" in img.info.get("parameters", "")


@_slow
def test_frozen_cli_bad_input_is_one_line(bundle_exe, tmp_path):
    proc = subprocess.run(
        [str(bundle_exe), "generate", "--model", str(tmp_path / "no-such-model"), "--prompt", "x",
         "--width", "64", "--height", "64", "--output", "out.png"],
        cwd=tmp_path, env=_bare_env(tmp_path / "home"), capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def _launch_gui(exe: Path, model: Path, tmp_path: Path, env: dict[str, str], seconds: float = 6.0) -> str:
    """Start the GUI, require it to still be running after `seconds`, stop it; return its output."""
    log = tmp_path / "gui.log"
    data = tmp_path / "data"
    with open(log, "w") as fh:
        proc = subprocess.Popen([str(exe), "--model", str(model), "--data-dir", str(data)], cwd=tmp_path, env=env,
                                stdout=fh, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    break
                time.sleep(0.2)
            alive = proc.poll() is None
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    output = log.read_text(errors="replace")
    assert alive, f"the GUI exited early with {proc.returncode}:\n{output}"
    bad = [line for line in output.splitlines() if QT_PLUGIN_ERRORS.search(line)]
    assert not bad, "errors from the frozen GUI:\n" + output
    return output


@_slow
def test_frozen_gui_starts_offscreen(bundle_exe, tiny_schnell, tmp_path):
    env = _bare_env(tmp_path / "home", QT_QPA_PLATFORM="offscreen")
    _launch_gui(bundle_exe, tiny_schnell, tmp_path, env)
    # It got far enough to open its data folder (history database, settings).
    assert (tmp_path / "data").is_dir()


@_slow
@pytest.mark.skipif(not shutil.which("Xvfb") or sys.platform != "linux",
                    reason="needs Xvfb (Debian package xvfb) to try the xcb platform plugin")
def test_frozen_gui_starts_on_x11(bundle_exe, tiny_schnell, tmp_path):
    display = f":{90 + os.getpid() % 100}"
    xvfb = subprocess.Popen(["Xvfb", display, "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.5)
        assert xvfb.poll() is None, "Xvfb did not start"
        env = _bare_env(tmp_path / "home", QT_QPA_PLATFORM="xcb", DISPLAY=display)
        _launch_gui(bundle_exe, tiny_schnell, tmp_path, env)
    finally:
        xvfb.terminate()
        xvfb.wait(timeout=10)
