#!/usr/bin/env bash
# Build the MLX Flux desktop app with PyInstaller from packaging/mlx-flux.spec.
#
#   macOS (Apple Silicon): build/dist/MLX Flux.app, signed (ad-hoc unless an identity is given),
#                          optionally notarised, plus build/dist/MLX-Flux-<version>.dmg
#   Linux:                 build/dist/mlx-flux/ (one folder; run build/dist/mlx-flux/mlx-flux)
#
# The script makes its own build environment (build/venv) from pyproject.toml, so it works
# from a fresh clone; the environment is reused while pyproject.toml, this script and the
# Python interpreter stay the same. The last line printed is the built executable's path.
#
# Environment (all optional):
#   PYTHON                    interpreter for the build venv (default: python3; 3.10 or newer)
#   MLXFLUX_BUILD_DIR         where venv, work files and dist go (default: <repo>/build)
#   MLXFLUX_CLEAN=1           rebuild the venv and PyInstaller's cache from scratch
# macOS only:
#   MLXFLUX_SIGN_IDENTITY     codesign identity, e.g. "Developer ID Application: Jane Doe (TEAMID)";
#                             unset = ad-hoc signature ("-"), fine for running on this Mac
#   MLXFLUX_NOTARY_PROFILE    keychain profile made with `xcrun notarytool store-credentials`;
#                             or MLXFLUX_APPLE_ID + MLXFLUX_TEAM_ID + MLXFLUX_APP_PASSWORD
#                             (app-specific password). Either one turns notarisation on
#                             (needs MLXFLUX_SIGN_IDENTITY).
#   MLXFLUX_DMG=0             skip the DMG
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${MLXFLUX_BUILD_DIR:-$ROOT/build}"
VENV="$BUILD/venv"
PYTHON="${PYTHON:-python3}"
# PyInstaller 6.x: one-folder layout with _internal/, .app bundles with Frameworks/Resources split.
PYINSTALLER_REQ="pyinstaller>=6.10,<7"
OS="$(uname -s)"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'build.sh: %s\n' "$*" >&2; exit 1; }

case "$OS" in
  Darwin)
    [ "$(uname -m)" = arm64 ] || die "MLX needs an Apple Silicon Mac (arm64); this is $(uname -m)" ;;
  Linux) ;;
  *) die "unsupported system: $OS (macOS or Linux)" ;;
esac

command -v "$PYTHON" >/dev/null || die "no Python interpreter '$PYTHON' (set PYTHON=...)"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
  || die "$PYTHON is $("$PYTHON" -V 2>&1); Python 3.10 or newer is needed"

mkdir -p "$BUILD"
# One build at a time per build folder (tests and people may start it side by side).
if command -v flock >/dev/null; then
  exec 9>"$BUILD/.lock"
  flock 9
fi
if [ "${MLXFLUX_CLEAN:-0}" = 1 ]; then
  log "cleaning $BUILD"
  rm -rf "$VENV" "$BUILD/pyinstaller" "$BUILD/dist"
fi

# --- 1. build environment --------------------------------------------------------------
# The stamp names everything that decides what goes into the venv; any change rebuilds it
# from scratch, so an old venv never leaks stale packages into the bundle.
stamp="$( {
  "$PYTHON" -c 'import sys, platform; print(sys.version, platform.machine())'
  cat "$ROOT/pyproject.toml"
  echo "$PYINSTALLER_REQ"
} | cksum | cut -d' ' -f1 )"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.mlxflux-stamp" 2>/dev/null)" != "$stamp" ]; then
  log "creating build environment in $VENV"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV" >&2
  "$VENV/bin/python" -m pip install --quiet --upgrade pip "setuptools>=68" wheel >&2
  # The project with its runtime dependencies exactly as a user gets them (mlx[cpu] on
  # Linux, mlx on macOS, PySide6-Essentials), and nothing else: no test extras, no torch.
  "$VENV/bin/python" -m pip install --quiet "$ROOT" "$PYINSTALLER_REQ" >&2
  echo "$stamp" > "$VENV/.mlxflux-stamp"
else
  log "reusing build environment $VENV"
  # Same dependencies; refresh only our own code (a few seconds, no network).
  "$VENV/bin/python" -m pip install --quiet --no-deps --no-build-isolation --force-reinstall "$ROOT" >&2
fi
# pip builds the project in the source tree (build/lib, build/bdist.*); drop those copies so
# nothing stale is ever mistaken for the source. (*.egg-info is left alone: an editable
# development install may share it.)
rm -rf "$ROOT/build/lib" "$ROOT/build/bdist."*

# --- 2. freeze ---------------------------------------------------------------------------
log "running PyInstaller"
export MLXFLUX_ROOT="$ROOT"
export MLXFLUX_SIGN_IDENTITY="${MLXFLUX_SIGN_IDENTITY:-}"
# Run from the build dir so the source tree never shadows the installed project.
( cd "$BUILD" && "$VENV/bin/python" -m PyInstaller --noconfirm --log-level WARN \
    --distpath "$BUILD/dist" --workpath "$BUILD/pyinstaller" "$ROOT/packaging/mlx-flux.spec" ) >&2

version="$("$VENV/bin/python" - "$ROOT/pyproject.toml" <<'PY'
import re, sys
text = open(sys.argv[1], encoding="utf-8").read()
print(re.search(r'(?m)^version\s*=\s*"([^"]+)"', text).group(1))
PY
)"

if [ "$OS" = Linux ]; then
  exe="$BUILD/dist/mlx-flux/mlx-flux"
  [ -x "$exe" ] || die "PyInstaller did not produce $exe"
  log "bundle: $BUILD/dist/mlx-flux ($(du -sh "$BUILD/dist/mlx-flux" | cut -f1))"
  echo "$exe"
  exit 0
fi

# --- 3. macOS: sign, DMG, notarise ---------------------------------------------------------
app="$BUILD/dist/MLX Flux.app"
exe="$app/Contents/MacOS/mlx-flux"
[ -x "$exe" ] || die "PyInstaller did not produce $exe"
identity="${MLXFLUX_SIGN_IDENTITY:--}"

# PyInstaller has signed every collected binary and then the bundle (the spec passes the
# identity and entitlements; with an identity it adds the hardened runtime and a secure
# timestamp, without one it signs ad hoc). Check the result the way Gatekeeper will.
if [ "$identity" = - ]; then
  log "signed ad hoc: $app"
else
  log "signed as '$identity' (hardened runtime): $app"
fi
codesign --verify --deep --strict --verbose=2 "$app" >&2

notary=()
if [ -n "${MLXFLUX_NOTARY_PROFILE:-}" ]; then
  notary=(--keychain-profile "$MLXFLUX_NOTARY_PROFILE")
elif [ -n "${MLXFLUX_APPLE_ID:-}" ]; then
  : "${MLXFLUX_TEAM_ID:?set MLXFLUX_TEAM_ID with MLXFLUX_APPLE_ID}"
  : "${MLXFLUX_APP_PASSWORD:?set MLXFLUX_APP_PASSWORD (an app-specific password) with MLXFLUX_APPLE_ID}"
  notary=(--apple-id "$MLXFLUX_APPLE_ID" --team-id "$MLXFLUX_TEAM_ID" --password "$MLXFLUX_APP_PASSWORD")
fi
if [ ${#notary[@]} -gt 0 ] && [ "$identity" = - ]; then
  die "notarisation needs a Developer ID identity: set MLXFLUX_SIGN_IDENTITY"
fi

notarise() {  # notarise FILE: submit, wait for Apple's verdict, print the log on failure
  local file="$1" out id
  log "notarising $(basename "$file") (this takes a few minutes)"
  if ! out="$(xcrun notarytool submit "$file" "${notary[@]}" --wait 2>&1)"; then
    echo "$out" >&2; die "notarytool submit failed"
  fi
  echo "$out" >&2
  if ! grep -q 'status: Accepted' <<<"$out"; then
    id="$(awk '/^ *id:/ {print $2; exit}' <<<"$out")"
    [ -n "$id" ] && xcrun notarytool log "$id" "${notary[@]}" >&2 || true
    die "notarisation of $(basename "$file") was not accepted"
  fi
}

if [ ${#notary[@]} -gt 0 ]; then
  # Notarise and staple the app itself first, so the copy a user drags to /Applications
  # carries its ticket and passes Gatekeeper offline; the DMG gets its own ticket below.
  zip="$BUILD/dist/MLX-Flux-$version.zip"
  ditto -c -k --keepParent "$app" "$zip"
  notarise "$zip"
  rm -f "$zip"
  xcrun stapler staple "$app" >&2
fi

if [ "${MLXFLUX_DMG:-1}" != 0 ]; then
  dmg="$BUILD/dist/MLX-Flux-$version.dmg"
  stage="$BUILD/dmg"
  rm -rf "$stage" "$dmg"
  mkdir -p "$stage"
  ditto "$app" "$stage/MLX Flux.app"       # ditto keeps signatures, symlinks and xattrs intact
  ln -s /Applications "$stage/Applications"
  log "making $dmg"
  hdiutil create -volname "MLX Flux" -srcfolder "$stage" -fs HFS+ -format UDZO -ov "$dmg" >&2
  rm -rf "$stage"
  if [ "$identity" != - ]; then
    codesign --force --sign "$identity" --timestamp "$dmg" >&2
  fi
  if [ ${#notary[@]} -gt 0 ]; then
    notarise "$dmg"
    xcrun stapler staple "$dmg" >&2
    spctl --assess --type open --context context:primary-signature --verbose=2 "$dmg" >&2 || true
  fi
  log "disk image: $dmg"
fi

log "bundle: $app ($(du -sh "$app" | cut -f1))"
echo "$exe"
