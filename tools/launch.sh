#!/usr/bin/env bash
# Deploy a built Clusterduck topology binary and start its master.
#
#   tools/launch.sh [--ssh-config FILE] [--master HOST] BINARY [-- ARGS...]
#
# Without --master, the master runs here: the binary is run with ARGS and
# itself ships a copy of itself to every host its topology uses (once per
# host, content-hashed, reused across runs) and starts the nodes over ssh.
# With --master HOST, the binary is first copied to HOST (content-hashed,
# under /tmp/clusterduck/.bin) and the master runs there, over ssh, with its
# stdout and stderr here; the hosts it uses must be reachable from HOST.
#
# --ssh-config FILE (or $CLUSTERDUCK_SSH_CONFIG) is the ssh config used for
# every connection, here and by the master; ssh runs in batch mode and checks
# host keys.
#
# Example, against the test hosts (tools/testnet.sh):
#   eval "$(tools/testnet.sh up 3)"
#   cargo build --release --example readme
#   tools/launch.sh target/release/examples/readme -- -n 1000 --hosts cd-h1,cd-h2,cd-h3
#   tools/launch.sh --master cd-h1 target/release/examples/readme -- -n 1000 --hosts cd-h1,cd-h2,cd-h3
set -euo pipefail

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed 's/^# \{0,1\}//; /^set -euo/d' >&2
    exit 2
}

config="${CLUSTERDUCK_SSH_CONFIG:-}"
master=""
while [ $# -gt 0 ]; do
    case "$1" in
        --ssh-config) config="${2:?--ssh-config needs a file}"; shift 2 ;;
        --master) master="${2:?--master needs a host}"; shift 2 ;;
        -h|--help) usage ;;
        --) shift; break ;;
        -*) echo "launch.sh: unknown option $1" >&2; usage ;;
        *) break ;;
    esac
done
binary="${1:-}"
[ -n "$binary" ] || { echo "launch.sh: no binary given" >&2; usage; }
shift
[ "${1:-}" = "--" ] && shift
[ -x "$binary" ] || { echo "launch.sh: $binary is not an executable file" >&2; exit 2; }
if [ -n "$config" ]; then
    [ -r "$config" ] || { echo "launch.sh: cannot read ssh config $config" >&2; exit 2; }
    config="$(cd "$(dirname "$config")" && pwd)/$(basename "$config")"
fi

if [ -z "$master" ]; then
    exec env ${config:+CLUSTERDUCK_SSH_CONFIG="$config"} "$binary" "$@"
fi

ssh_cmd=(ssh -o BatchMode=yes)
[ -n "$config" ] && ssh_cmd+=(-F "$config")

quote() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }

hash="$(sha256sum "$binary" | cut -c1-16)"
remote_bin="/tmp/clusterduck/.bin/$(basename "$binary")-$hash"
echo "launch.sh: copying $binary to $master:$remote_bin (if not there yet)" >&2
"${ssh_cmd[@]}" "$master" -- "mkdir -p /tmp/clusterduck/.bin && if test -x $(quote "$remote_bin"); then cat >/dev/null; else cat > $(quote "$remote_bin").\$\$ && chmod 700 $(quote "$remote_bin").\$\$ && mv $(quote "$remote_bin").\$\$ $(quote "$remote_bin"); fi" < "$binary" \
    || { echo "launch.sh: copying the binary to $master failed" >&2; exit 1; }

remote="exec"
[ -n "$config" ] && remote+=" env CLUSTERDUCK_SSH_CONFIG=$(quote "$config")"
remote+=" $(quote "$remote_bin")"
for arg in "$@"; do remote+=" $(quote "$arg")"; done
echo "launch.sh: starting the master on $master" >&2
exec "${ssh_cmd[@]}" "$master" -- "$remote"
