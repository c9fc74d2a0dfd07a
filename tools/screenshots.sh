#!/usr/bin/env bash
# Makes the screenshots of docs/: the live view (the readme example in a
# tmux pane, captured with capture-pane and drawn by headless Chromium) and
# the status page (headless Chromium on the example's page), both taken
# while the run goes. Needs tmux and chromium (.ci/run installs them).
#
#   tools/screenshots.sh            # writes docs/live-view.png, docs/status-page.png
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --example readme
bin=target/release/examples/readme
work=$(mktemp -d /tmp/cd-screens-XXXX)
socket="cd-screens-$$"
port=$((20000 + $$ % 20000))
trap 'tmux -L "$socket" kill-server 2>/dev/null || true; rm -rf "$work"' EXIT

tmux -L "$socket" new-session -d -x 110 -y 12 \
  "env -u CLUSTERDUCK_LIVE $bin -n 30000000 --dir $work --metrics 127.0.0.1:$port > /dev/null; sleep 60"
# Wait for the view, then let a few seconds of figures come.
for _ in $(seq 100); do
  tmux -L "$socket" capture-pane -p | grep -q "clusterduck running" && break
  sleep 0.1
done
sleep 4
tmux -L "$socket" capture-pane -p > "$work/pane.txt"

chrome() {
  chromium --headless --no-sandbox --disable-gpu --hide-scrollbars \
    --virtual-time-budget=2500 "$@" 2>/dev/null
}
chrome --window-size=1000,520 --screenshot=docs/status-page.png "http://127.0.0.1:$port/"

# The pane as a terminal shows it: monospace, light on dark.
python3 - "$work/pane.txt" "$work/pane.html" <<'PY'
import html, sys
text = open(sys.argv[1]).read().rstrip("\n")
open(sys.argv[2], "w").write(
    "<html><body style='margin:0;background:#1e1e1e'>"
    "<pre style='margin:0;padding:12px;color:#e6e6e6;"
    "font:14px/1.25 DejaVu Sans Mono,monospace'>"
    + html.escape(text) + "</pre></body></html>")
PY
chrome --window-size=1000,230 --screenshot=docs/live-view.png "file://$work/pane.html"
echo "wrote docs/status-page.png and docs/live-view.png"
