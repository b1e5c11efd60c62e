#!/usr/bin/env bash
# Remove OPPU for the current user: what install.sh put in place (bundle or pipx app, menu
# entry, icons, the retrain timer). Your writing, adapters and settings are NOT removed
# unless you ask:
#
#   bash uninstall.sh                remove the app; say where your data is and keep it
#   bash uninstall.sh --delete-data  remove the app and, after you confirm, your data too
set -euo pipefail
PREFIX=${PREFIX:-$HOME/.local}
SYSTEMD_USER_DIR=${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user
# The app's data root (oppu.storage.paths.data_root): OPPU_HOME, else platformdirs' user
# data folder, which on Linux is $XDG_DATA_HOME/oppu.
DATA=${OPPU_HOME:-${XDG_DATA_HOME:-$HOME/.local/share}/oppu}
DELETE_DATA=0

case "${1:-}" in
    "") ;;
    --delete-data) DELETE_DATA=1 ;;
    -h|--help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "uninstall.sh: unknown option $1 (try --help)" >&2; exit 1 ;;
esac

# The timer first, so it cannot start the app while it is being removed.
for unit in "$SYSTEMD_USER_DIR"/oppu*.timer "$SYSTEMD_USER_DIR"/oppu*.service; do
    [ -e "$unit" ] || continue
    if [[ "$unit" == *.timer ]] && command -v systemctl >/dev/null; then
        systemctl --user disable --now "$(basename "$unit")" 2>/dev/null || true
    fi
    rm -f "$unit"
done
if command -v systemctl >/dev/null; then systemctl --user daemon-reload 2>/dev/null || true; fi

for name in oppu oppu-desktop; do
    # Only our links into the bundle; a pipx install is pipx's to remove.
    if [ -L "$PREFIX/bin/$name" ] && [[ "$(readlink "$PREFIX/bin/$name")" == "$PREFIX/lib/oppu/"* ]]; then
        rm -f "$PREFIX/bin/$name"
    fi
done
rm -rf "$PREFIX/lib/oppu"
if command -v pipx >/dev/null && pipx list --short 2>/dev/null | grep -q '^oppu-desktop '; then
    pipx uninstall oppu-desktop
fi
rm -f "$PREFIX/share/applications/oppu-desktop.desktop" \
    "$PREFIX/share/icons/hicolor/scalable/apps/oppu.svg" \
    "$PREFIX/share/icons/hicolor/512x512/apps/oppu.png"
echo "OPPU is uninstalled."

if [ ! -d "$DATA" ]; then
    echo "No OPPU data found at $DATA."
    exit 0
fi
if [ "$DELETE_DATA" = 0 ]; then
    echo "Your data (writing, adapters, settings) is still in $DATA"
    echo "It stays there: reinstall to use it again, or run 'uninstall.sh --delete-data' to delete it."
    exit 0
fi
echo "This deletes ALL your OPPU data in $DATA: your writing, conversations and adapters."
read -r -p "Type 'delete' to confirm: " answer || answer=""
if [ "$answer" = delete ]; then
    rm -rf "$DATA"
    echo "Deleted $DATA."
else
    echo "Not confirmed: your data is still in $DATA."
    exit 1
fi
