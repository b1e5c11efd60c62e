#!/usr/bin/env bash
# Install OPPU for the current user (no root): the app, its menu entry and icons, and
# optionally the systemd user timer that retrains in the background.
#
#   bash install.sh                 the desktop bundle: this folder if it is one, else dist/oppu
#   bash install.sh --bundle DIR    the bundle in DIR (built by packaging/build.sh)
#   bash install.sh --pipx [WHEEL]  the Python package with pipx (default: the newest dist/*.whl)
#   add --timer                     also enable the background retrain timer
#
# Files go under PREFIX (default ~/.local): lib/oppu/ (the bundle), bin/oppu and
# bin/oppu-desktop, share/applications/oppu-desktop.desktop, share/icons/hicolor/.
# Your data is not touched; `uninstall.sh` says where it lives.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
PREFIX=${PREFIX:-$HOME/.local}
SYSTEMD_USER_DIR=${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user
MODE=bundle BUNDLE="" WHEEL="" TIMER=0

die() { echo "install.sh: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --bundle) [ $# -ge 2 ] || die "--bundle needs a folder"; BUNDLE=$2; shift ;;
        --pipx) MODE=pipx; if [ $# -ge 2 ] && [[ "$2" != --* ]]; then WHEEL=$2; shift; fi ;;
        --timer) TIMER=1 ;;
        -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (try --help)" ;;
    esac
    shift
done

# Where the desktop entry, icons and units come from: next to this script inside a bundle
# (build.sh copies them there), or the source checkout this script belongs to.
find_bundle() {
    if [ -n "$BUNDLE" ]; then echo "$BUNDLE"
    elif [ -x "$HERE/oppu-desktop" ]; then echo "$HERE"
    else echo "$HERE/../../dist/oppu"; fi
}

install_bundle() {
    local source
    source=$(find_bundle)
    [ -x "$source/oppu-desktop" ] && [ -x "$source/oppu" ] \
        || die "no OPPU bundle at $source: build one with 'bash packaging/build.sh' or pass --bundle DIR"
    source=$(cd "$source" && pwd)
    mkdir -p "$PREFIX/lib" "$PREFIX/bin"
    rm -rf "$PREFIX/lib/oppu.new"
    cp -a "$source" "$PREFIX/lib/oppu.new"
    rm -rf "$PREFIX/lib/oppu"
    mv "$PREFIX/lib/oppu.new" "$PREFIX/lib/oppu"
    ln -sfn "$PREFIX/lib/oppu/oppu" "$PREFIX/bin/oppu"
    ln -sfn "$PREFIX/lib/oppu/oppu-desktop" "$PREFIX/bin/oppu-desktop"
    ASSETS="$PREFIX/lib/oppu/_internal/oppu/assets"
    UNITS="$PREFIX/lib/oppu/systemd"
    BIN="$PREFIX/bin"
}

install_pipx() {
    command -v pipx >/dev/null || die "pipx is not installed (e.g. 'sudo apt install pipx' or 'python3 -m pip install --user pipx')"
    if [ -z "$WHEEL" ]; then
        WHEEL=$(ls -t "$HERE"/../../dist/oppu_desktop-*.whl 2>/dev/null | head -n 1 || true)
        [ -n "$WHEEL" ] || die "no wheel in dist/: build one with 'python -m build' or pass --pipx WHEEL"
    fi
    pipx install --force "$WHEEL"
    BIN=$(pipx environment --value PIPX_BIN_DIR)
    local python
    python="$(pipx environment --value PIPX_LOCAL_VENVS)/oppu-desktop/bin/python"
    ASSETS=$("$python" -c 'from importlib.resources import files; print(files("oppu.assets"))')
    UNITS="$HERE/../systemd"
}

install_menu_entry() {
    local apps="$PREFIX/share/applications" icons="$PREFIX/share/icons/hicolor"
    mkdir -p "$apps" "$icons/scalable/apps" "$icons/512x512/apps"
    # Menus start apps without the login shell's PATH, so name the executable in full.
    sed -e "s|^Exec=.*|Exec=$BIN/oppu-desktop|" -e "s|^TryExec=.*||" \
        "$ASSETS/oppu-desktop.desktop" > "$apps/oppu-desktop.desktop"
    cp "$ASSETS/oppu.svg" "$icons/scalable/apps/oppu.svg"
    cp "$ASSETS/oppu.png" "$icons/512x512/apps/oppu.png"
    if command -v update-desktop-database >/dev/null; then update-desktop-database -q "$apps" || true; fi
    if command -v gtk-update-icon-cache >/dev/null; then gtk-update-icon-cache -q -t "$icons" || true; fi
}

install_timer() {
    local units=() unit
    [ -d "$UNITS" ] && mapfile -t units < <(ls "$UNITS"/*.service "$UNITS"/*.timer 2>/dev/null)
    [ ${#units[@]} -gt 0 ] || die "no systemd units found in $UNITS"
    mkdir -p "$SYSTEMD_USER_DIR"
    for unit in "${units[@]}"; do
        # The units call `oppu`; point them at the executable installed here.
        sed -E "s#^(ExecStart=)(/[^ ]*/)?oppu( |$)#\1$BIN/oppu\3#" "$unit" \
            > "$SYSTEMD_USER_DIR/$(basename "$unit")"
    done
    if command -v systemctl >/dev/null && systemctl --user daemon-reload 2>/dev/null; then
        for unit in "${units[@]}"; do
            if [[ "$unit" == *.timer ]]; then systemctl --user enable --now "$(basename "$unit")"; fi
        done
        echo "background retraining: enabled (systemctl --user list-timers)"
    else
        echo "systemd is not running for this user: units copied to $SYSTEMD_USER_DIR, enable them later"
    fi
}

if [ "$MODE" = pipx ]; then install_pipx; else install_bundle; fi
install_menu_entry
if [ "$TIMER" = 1 ]; then install_timer; fi
echo "OPPU is installed: start it from your applications menu, or run $BIN/oppu-desktop"
case ":$PATH:" in *":$BIN:"*) ;; *) echo "(add $BIN to your PATH to run 'oppu' in a terminal)" ;; esac
