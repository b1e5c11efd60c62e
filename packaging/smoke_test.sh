#!/usr/bin/env bash
# Meet a built bundle the way a new user does: an empty HOME, no network, a fresh display.
#   bash packaging/smoke_test.sh [BUNDLE] [SCREENSHOT]     (defaults: dist/oppu, build/bundle-main-window.png)
# 1. starts oppu-desktop under Xvfb, waits for the "OPPU" main window, takes a screenshot;
# 2. asks the bundled model one question with `oppu ask`.
# Writes the timings to build/smoke-stats.json. Linux; needs Xvfb, xwininfo (x11-utils) and
# ImageMagick's `import`. Cuts the network with `unshare` where the kernel allows it.
set -euo pipefail
cd "$(dirname "$0")/.."
BUNDLE=$(cd "${1:-dist/oppu}" && pwd)
SHOT=${2:-build/bundle-main-window.png}
QUESTION=${QUESTION:-"Write one sentence about rivers."}
for tool in Xvfb xwininfo import; do
    command -v "$tool" >/dev/null || { echo "smoke_test.sh: needs $tool (apt-get install xvfb x11-utils imagemagick)" >&2; exit 1; }
done

HOME=$(mktemp -d)
export HOME
unset OPPU_HOME XDG_DATA_HOME XDG_CONFIG_HOME XDG_CACHE_HOME
NO_NET=()
if unshare -n true 2>/dev/null; then NO_NET=(unshare -n)
elif unshare -rn true 2>/dev/null; then NO_NET=(unshare -rn)
else echo "smoke_test.sh: cannot cut the network here (unshare refused); running with it" >&2; fi

seconds_since() { local ms=$(( ($(date +%s%N) - $1) / 1000000 )); printf '%d.%03d' $((ms / 1000)) $((ms % 1000)); }

DISPLAY_NUMBER=${DISPLAY_NUMBER:-97}
Xvfb ":$DISPLAY_NUMBER" -screen 0 1280x800x24 -nolisten tcp >/dev/null 2>&1 &
XVFB_PID=$!
APP_PID=""
cleanup() {
    if [ -n "$APP_PID" ]; then kill "$APP_PID" 2>/dev/null || true; fi
    kill "$XVFB_PID" 2>/dev/null || true
    rm -rf "$HOME"
}
trap cleanup EXIT
export DISPLAY=":$DISPLAY_NUMBER"
export QT_QPA_PLATFORM=xcb
for _ in $(seq 50); do xwininfo -root >/dev/null 2>&1 && break; sleep 0.1; done

start=$(date +%s%N)
"${NO_NET[@]}" "$BUNDLE/oppu-desktop" > "$HOME/desktop.log" 2>&1 &
APP_PID=$!
window_s=""
for _ in $(seq 1200); do
    if xwininfo -root -tree 2>/dev/null | grep -q '"OPPU"'; then
        window_s=$(seconds_since "$start"); break
    fi
    kill -0 "$APP_PID" 2>/dev/null || break
    sleep 0.1
done
if [ -z "$window_s" ]; then
    echo "smoke_test.sh: no OPPU window appeared; the app said:" >&2
    cat "$HOME/desktop.log" >&2
    exit 1
fi
sleep "${SETTLE_S:-8}"  # let the first page finish loading before the picture
kill -0 "$APP_PID" || { echo "smoke_test.sh: the app exited:" >&2; cat "$HOME/desktop.log" >&2; exit 1; }
mkdir -p "$(dirname "$SHOT")"
import -window root "$SHOT"
kill "$APP_PID"; wait "$APP_PID" 2>/dev/null || true; APP_PID=""
echo "window shown after ${window_s} s; screenshot: $SHOT"

load=$(cut -d' ' -f1 /proc/loadavg)  # other work on the machine skews the timings
start=$(date +%s%N)
answer=$("${NO_NET[@]}" "$BUNDLE/oppu" ask "$QUESTION")
ask_s=$(seconds_since "$start")
[ -n "$(echo "$answer" | tr -d '[:space:]')" ] || { echo "smoke_test.sh: empty answer" >&2; exit 1; }
echo "oppu ask \"$QUESTION\" answered in ${ask_s} s:"
echo "$answer"
python3 -c 'import json, sys
json.dump({"window_s": round(float(sys.argv[1]), 1), "ask_s": round(float(sys.argv[2]), 1),
           "question": sys.argv[3], "answer": sys.argv[4], "network": sys.argv[5],
           "load_1min": float(sys.argv[6])},
          open("build/smoke-stats.json", "w"), indent=1)' \
    "$window_s" "$ask_s" "$QUESTION" "$answer" "${NO_NET[*]:-on}" "$load"
