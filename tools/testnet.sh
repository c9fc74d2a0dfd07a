#!/usr/bin/env bash
# testnet.sh: make and remove Clusterduck's test hosts, the machines the
# multi-host tests run on (DESIGN.md §6, issue 5).
#
# Usage:
#   tools/testnet.sh up [N]   make hosts cd-h1..cd-hN (default 3); prints one
#                             line on stdout, the export line below
#   tools/testnet.sh down     remove everything `up` made
#   tools/testnet.sh status   show each host; exit 0 only if all answer ssh
#   tools/testnet.sh env      print the export line again
#
#   eval "$(tools/testnet.sh up 3)"   # sets CLUSTERDUCK_SSH_CONFIG
#
# Needs root and Debian's iproute2, openssh-server and openssh-client; installs
# nothing itself (.ci/run does).
#
# What a test host is
#   - A network namespace `cd-hK`, with loopback up and one interface, `eth0`,
#     the inner end of a veth pair whose outer end `cd-vK` is a port of the
#     bridge `cd-br0` in the root namespace. Host K has 10.203.0.(10+K)/24;
#     the bridge has 10.203.0.1/24. Hosts share the machine's filesystem and
#     process table: only the network is separate, which is what the
#     multi-host mode cares about (addresses, links, sshd).
#   - Its own sshd, run inside the namespace (`ip netns exec cd-hK sshd`),
#     listening on the host's address only, with its own generated ed25519
#     host key, accepting only the generated client key, for root.
#
# Where the master runs
#   In the root namespace. It reaches the hosts through the bridge: the
#   bridge's address makes 10.203.0.0/24 a directly connected route there, and
#   its connections come from 10.203.0.1. The hosts reach each other over the
#   bridge too. Hosts have no default route: the only addresses they can
#   reach are the test subnet's, so no test traffic can leave the machine.
#
# Addresses
#   10.203.0.0/24 by default; set CLUSTERDUCK_TESTNET_PREFIX=A.B.C to use
#   A.B.C.0/24 instead (private ranges only; `up` again keeps the subnet the
#   hosts are on, and refuses another one until `down`). `up` first checks
#   that nothing else on the machine has an address or a route in that
#   subnet (apart from cd-br0's own) and fails, naming the interface or the
#   route, if something does.
#
# Keys and the ssh config (state in /tmp/clusterduck-testnet/, mode 0700)
#   id_ed25519{,.pub}   the client key pair the master uses
#   authorized_keys     that key, usable from the test subnet only
#   known_hosts         each host's key under its alias and its address
#   ssh_config          `Host cd-hK` -> HostName, User root, IdentityFile,
#                       UserKnownHostsFile, StrictHostKeyChecking yes,
#                       BatchMode yes, ConnectTimeout 5: host keys are
#                       checked, never learned (use it with `ssh -F`);
#                       ServerAliveInterval 5 so a cut link ends a session
#                       within about 15 s
#   hosts/cd-hK/        host key, sshd_config, sshd.pid, sshd.log
#   prefix              the subnet's first three octets, as used by `up`
#   count               N, as given to `up`
#
# Idempotent
#   `up` on hosts that are up checks each part and repairs or reuses it: it
#   keeps the keys (so known_hosts stays valid), restarts an sshd that is dead
#   or whose config changed, and removes hosts numbered above N. `down` stops
#   every process still inside a test host (the sshds and whatever was started
#   through them) by pid, SIGTERM then SIGKILL, and any sshd it started that
#   was stranded outside its host (its command line names its config here);
#   it deletes the veths, namespaces, bridge and state directory, and
#   succeeds when nothing is up. One `up` or `down` runs at a time (a lock
#   in /run, removed by `down`).
set -euo pipefail

readonly STATE=/tmp/clusterduck-testnet
readonly BRIDGE=cd-br0
readonly LOCK=/run/clusterduck-testnet.lock
readonly SSHD=/usr/sbin/sshd
readonly MAX_HOSTS=64
PREFIX=${CLUSTERDUCK_TESTNET_PREFIX:-10.203.0}

usage() {
  cat <<EOF
usage: $(basename "$0") up [N] | down | status | env

  up [N]   make test hosts cd-h1..cd-hN (default 3, at most $MAX_HOSTS) as network
           namespaces on bridge $BRIDGE, each with its own sshd; prints
           export CLUSTERDUCK_SSH_CONFIG=$STATE/ssh_config
           so that  eval "\$($(basename "$0") up 3)"  works (progress on stderr)
  down     remove the hosts, the bridge and $STATE
  status   show each host and whether its sshd answers
  env      print the export line again

Subnet: \$CLUSTERDUCK_TESTNET_PREFIX.0/24 (default 10.203.0.0/24). Needs root.
EOF
}

log() { printf 'testnet: %s\n' "$*" >&2; }
die() {
  printf 'testnet: error: %s\n' "$*" >&2
  exit 1
}

# Runs a command, its output on stderr; on failure, dies naming it and `what`.
run() {
  local what=$1
  shift
  local out
  if ! out=$("$@" 2>&1); then
    die "$what failed: \`$*\`: ${out:-no output}"
  fi
  [[ -z $out ]] || printf '%s\n' "$out" >&2
}

need_root() {
  [[ $EUID -eq 0 ]] || die "must run as root (network namespaces, bridge, sshd); try: sudo $0 $*"
}

need_tools() {
  command -v ip >/dev/null || die "\`ip\` not found: install Debian package iproute2"
  [[ -x $SSHD ]] || die "$SSHD not found: install Debian package openssh-server"
  command -v ssh >/dev/null || die "\`ssh\` not found: install Debian package openssh-client"
  command -v ssh-keygen >/dev/null || die "\`ssh-keygen\` not found: install Debian package openssh-client"
  command -v flock >/dev/null || die "\`flock\` not found: install Debian package util-linux"
}

# One `up` or `down` at a time.
take_lock() {
  exec 9>"$LOCK" || die "cannot open lock file $LOCK"
  flock 9 || die "cannot lock $LOCK"
}

check_prefix() {
  [[ $PREFIX =~ ^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$ ]] ||
    die "CLUSTERDUCK_TESTNET_PREFIX=$PREFIX: want three octets, like 10.203.0"
  local a=${BASH_REMATCH[1]} b=${BASH_REMATCH[2]} c=${BASH_REMATCH[3]}
  ((b <= 255 && c <= 255)) || die "CLUSTERDUCK_TESTNET_PREFIX=$PREFIX: octet out of range"
  if ! ((a == 10 || (a == 172 && b >= 16 && b <= 31) || (a == 192 && b == 168))); then
    die "CLUSTERDUCK_TESTNET_PREFIX=$PREFIX: not a private (RFC 1918) range"
  fi
}

host_ns() { printf 'cd-h%d' "$1"; }
host_veth() { printf 'cd-v%d' "$1"; }
host_addr() { printf '%s.%d' "$PREFIX" $((10 + $1)); }
host_dir() { printf '%s/hosts/cd-h%d' "$STATE" "$1"; }

# The numbers K of the namespaces cd-hK that exist, ascending.
existing_hosts() {
  ip netns list 2>/dev/null | awk '{print $1}' | sed -n 's/^cd-h\([0-9][0-9]*\)$/\1/p' | sort -n
}

ns_exists() { ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$1"; }

# Dies if anything but our bridge has an address or a route in the subnet.
check_subnet_free() {
  local subnet=$PREFIX.0/24 found
  found=$(ip -o -4 addr show to "$subnet" | awk -v br="$BRIDGE" '$2 != br {print $2 " " $4}')
  [[ -z $found ]] ||
    die "subnet $subnet is already in use on this machine (address: $found); set CLUSTERDUCK_TESTNET_PREFIX to another private /24"
  # Routes inside the subnet or covering it (but the default route, which
  # covers everything and is never chosen over our connected route).
  found=$({
    ip -4 route show table all root "$subnet"
    ip -4 route show table all match "$subnet"
  } | grep -v -e "dev $BRIDGE\( \|$\)" -e '^default ' || true)
  [[ -z $found ]] ||
    die "subnet $subnet is already in use on this machine (route: $(head -n1 <<<"$found")); set CLUSTERDUCK_TESTNET_PREFIX to another private /24"
}

# Turns IPv6 off on an interface (in the namespace `ns`, or the root one if
# empty): the test links carry IPv4 only, and no router solicitations.
no_ipv6() {
  local ns=$1 dev=$2 knob=/proc/sys/net/ipv6/conf/$2/disable_ipv6
  if [[ -n $ns ]]; then
    ip netns exec "$ns" sh -c "[ ! -e $knob ] || echo 1 > $knob" || true
  else
    [[ ! -e $knob ]] || echo 1 >"$knob" || true
  fi
}

ensure_bridge() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    log "creating bridge $BRIDGE"
    run "creating bridge $BRIDGE" ip link add "$BRIDGE" type bridge stp_state 0 forward_delay 0
  fi
  ip -d link show "$BRIDGE" | grep -qw bridge || die "$BRIDGE exists but is not a bridge; remove it first"
  no_ipv6 "" "$BRIDGE"
  run "giving $BRIDGE its address" ip addr replace "$PREFIX.1/24" dev "$BRIDGE"
  run "bringing $BRIDGE up" ip link set "$BRIDGE" up
}

ensure_keys() {
  mkdir -p "$STATE/hosts" || die "cannot create state directory $STATE"
  chmod 700 "$STATE"
  if [[ ! -s $STATE/id_ed25519 || ! -s $STATE/id_ed25519.pub ]]; then
    log "generating the client key $STATE/id_ed25519"
    rm -f "$STATE/id_ed25519" "$STATE/id_ed25519.pub"
    run "generating the client key" ssh-keygen -q -t ed25519 -N '' -C clusterduck-testnet-client -f "$STATE/id_ed25519"
  fi
  # The key opens a shell on the test hosts, so only from the test subnet.
  printf 'from="%s.0/24",no-agent-forwarding,no-X11-forwarding %s\n' \
    "$PREFIX" "$(cat "$STATE/id_ed25519.pub")" >"$STATE/authorized_keys.new"
  mv "$STATE/authorized_keys.new" "$STATE/authorized_keys"
}

# The pid in host K's sshd pid file, if that process is alive and is the
# sshd this script started for host K (its command line names K's config).
own_sshd_pid() {
  local k=$1 pidfile pid
  pidfile=$(host_dir "$k")/sshd.pid
  [[ -s $pidfile ]] || return 1
  pid=$(<"$pidfile")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ $(cat "/proc/$pid/comm" 2>/dev/null) == sshd ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "-f $(host_dir "$k")/sshd_config " || return 1
  printf '%s\n' "$pid"
}

# Like own_sshd_pid, and the process is in host K's namespace (not in one
# deleted and made again behind its back).
live_sshd_pid() {
  local k=$1 ns pid
  ns=$(host_ns "$k")
  pid=$(own_sshd_pid "$k") || return 1
  ns_exists "$ns" || return 1
  [[ $(readlink "/proc/$pid/ns/net" 2>/dev/null) == "$(ip netns exec "$ns" readlink /proc/self/ns/net 2>/dev/null)" ]] || return 1
  printf '%s\n' "$pid"
}

# The sshd listeners this script started (their command line names a
# config in the state directory), wherever they are: `down` ends them even
# when their pid files or namespaces are gone.
stray_sshd_pids() {
  local dir pid
  for dir in /proc/[0-9]*; do
    pid=${dir#/proc/}
    [[ $(cat "$dir/comm" 2>/dev/null) == sshd ]] || continue
    if tr '\0' ' ' <"$dir/cmdline" 2>/dev/null | grep -qE -- "^(sshd: )?$SSHD -f $STATE/hosts/cd-h[0-9]+/sshd_config "; then
      printf '%s\n' "$pid"
    fi
  done
}

sshd_config_text() {
  local k=$1 dir
  dir=$(host_dir "$k")
  cat <<EOF
# Generated by tools/testnet.sh for test host $(host_ns "$k"); rewritten by \`up\`.
ListenAddress $(host_addr "$k")
Port 22
HostKey $dir/ssh_host_ed25519_key
PidFile $dir/sshd.pid
AuthorizedKeysFile $STATE/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
# The state directory sits under /tmp (sticky, world-writable parents).
StrictModes no
AcceptEnv CLUSTERDUCK_*
# The master may open a session per node at once.
MaxStartups 100:30:200
MaxSessions 64
ClientAliveInterval 5
ClientAliveCountMax 3
AllowAgentForwarding no
X11Forwarding no
PrintMotd no
PrintLastLog no
Subsystem sftp internal-sftp
EOF
}

ensure_host() {
  local k=$1 ns veth addr dir
  ns=$(host_ns "$k")
  veth=$(host_veth "$k")
  addr=$(host_addr "$k")
  dir=$(host_dir "$k")

  if ! ns_exists "$ns"; then
    log "creating host $ns ($addr)"
    run "creating network namespace $ns (needs root with CAP_SYS_ADMIN)" ip netns add "$ns"
  fi
  # A veth whose other end is gone, or a namespace without its eth0: remake the pair.
  if ! ip netns exec "$ns" ip link show eth0 >/dev/null 2>&1; then
    del_link "$veth"
    run "creating veth pair $veth <-> $ns:eth0" ip link add "$veth" type veth peer name eth0 netns "$ns"
  elif ! ip link show "$veth" >/dev/null 2>&1; then
    ip netns exec "$ns" ip link del eth0 >/dev/null 2>&1 || true
    run "creating veth pair $veth <-> $ns:eth0" ip link add "$veth" type veth peer name eth0 netns "$ns"
  fi
  no_ipv6 "" "$veth"
  no_ipv6 "$ns" eth0
  run "attaching $veth to $BRIDGE" ip link set "$veth" master "$BRIDGE"
  run "bringing $veth up" ip link set "$veth" up
  run "bringing loopback up in $ns" ip netns exec "$ns" ip link set lo up
  run "giving $ns its address $addr" ip netns exec "$ns" ip addr replace "$addr/24" dev eth0
  run "bringing eth0 up in $ns" ip netns exec "$ns" ip link set eth0 up

  mkdir -p "$dir"
  if [[ ! -s $dir/ssh_host_ed25519_key || ! -s $dir/ssh_host_ed25519_key.pub ]]; then
    rm -f "$dir/ssh_host_ed25519_key" "$dir/ssh_host_ed25519_key.pub"
    run "generating the host key of $ns" ssh-keygen -q -t ed25519 -N '' -C "$ns" -f "$dir/ssh_host_ed25519_key"
  fi
  sshd_config_text "$k" >"$dir/sshd_config.new"
  run "checking the sshd config of $ns" "$SSHD" -t -f "$dir/sshd_config.new"

  local pid
  if ! live_sshd_pid "$k" >/dev/null && pid=$(own_sshd_pid "$k"); then
    log "stopping the sshd of $ns left in a namespace that is gone (pid $pid)"
    stop_pid "$pid"
  fi
  if pid=$(live_sshd_pid "$k"); then
    if cmp -s "$dir/sshd_config.new" "$dir/sshd_config"; then
      rm -f "$dir/sshd_config.new"
      return
    fi
    log "restarting the sshd of $ns (its config changed)"
    stop_pid "$pid"
  fi
  mv "$dir/sshd_config.new" "$dir/sshd_config"
  rm -f "$dir/sshd.pid"
  log "starting the sshd of $ns on $addr:22"
  run "starting the sshd of $ns (log: $dir/sshd.log)" \
    ip netns exec "$ns" "$SSHD" -f "$dir/sshd_config" -E "$dir/sshd.log"
}

write_client_files() {
  local n=$1 k known ssh_config aliases=""
  known=$STATE/known_hosts.new
  ssh_config=$STATE/ssh_config.new
  : >"$known"
  {
    echo "# Generated by tools/testnet.sh: Clusterduck's test hosts. Use with \`ssh -F\`."
    echo "# Host keys are checked against $STATE/known_hosts, never learned."
  } >"$ssh_config"
  for ((k = 1; k <= n; k++)); do
    local ns
    ns=$(host_ns "$k")
    aliases+=" $ns"
    printf '%s,%s %s\n' "$ns" "$(host_addr "$k")" \
      "$(awk '{print $1 " " $2}' "$(host_dir "$k")/ssh_host_ed25519_key.pub")" >>"$known"
    printf '\nHost %s\n  HostName %s\n' "$ns" "$(host_addr "$k")" >>"$ssh_config"
  done
  cat >>"$ssh_config" <<EOF

Host$aliases
  User root
  Port 22
  IdentityFile $STATE/id_ed25519
  IdentitiesOnly yes
  UserKnownHostsFile $STATE/known_hosts
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  UpdateHostKeys no
  CheckHostIP no
  BatchMode yes
  ConnectTimeout 5
  ServerAliveInterval 5
  ServerAliveCountMax 3
  LogLevel ERROR
EOF
  mv "$known" "$STATE/known_hosts"
  mv "$ssh_config" "$STATE/ssh_config"
  printf '%s\n' "$PREFIX" >"$STATE/prefix"
  printf '%s\n' "$n" >"$STATE/count"
}

# Waits (bounded, about 10 s) until `ssh cd-hK true` works from the
# namespace `from` (the root one if empty); else returns 1 with ssh's last
# complaint in SSH_ERR.
SSH_ERR=""
wait_ssh() {
  local k=$1 from=${2:-} i
  local -a cmd=(ssh -F "$STATE/ssh_config" "$(host_ns "$k")" true)
  [[ -z $from ]] || cmd=(ip netns exec "$from" "${cmd[@]}")
  for ((i = 0; i < 50; i++)); do
    if SSH_ERR=$("${cmd[@]}" 2>&1 </dev/null); then
      return 0
    fi
    sleep 0.2
  done
  SSH_ERR=${SSH_ERR:-no output}
  return 1
}

# Ends `pid`: SIGTERM, then SIGKILL after 2 s.
stop_pid() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 20; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

remove_host() {
  local k=$1 ns veth pid pids i
  ns=$(host_ns "$k")
  veth=$(host_veth "$k")
  if pid=$(own_sshd_pid "$k"); then
    stop_pid "$pid"
  fi
  if ns_exists "$ns"; then
    # Whatever still runs inside the host: sessions, nodes, iperf3.
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    if [[ -n $pids ]]; then
      log "stopping the processes left in $ns: $(tr '\n' ' ' <<<"$pids")"
      # shellcheck disable=SC2086 # one pid per word
      kill -TERM $pids 2>/dev/null || true
      for ((i = 0; i < 20; i++)); do
        [[ -n $(ip netns pids "$ns" 2>/dev/null) ]] || break
        sleep 0.1
      done
      pids=$(ip netns pids "$ns" 2>/dev/null || true)
      # shellcheck disable=SC2086
      [[ -z $pids ]] || kill -KILL $pids 2>/dev/null || true
    fi
    log "removing host $ns"
  fi
  # The pair first, synchronously: a namespace's own links go away in the
  # background after `ip netns del`, and a later `up` would find them.
  del_link "$veth"
  if ns_exists "$ns"; then
    run "deleting network namespace $ns" ip netns del "$ns"
  fi
  rm -rf "$(host_dir "$k")"
}

# Deletes a link in the root namespace if it exists; a link that vanishes
# meanwhile (its namespace being torn down) is not an error.
del_link() {
  local out
  ip link show "$1" >/dev/null 2>&1 || return 0
  if ! out=$(ip link del "$1" 2>&1) && ip link show "$1" >/dev/null 2>&1; then
    die "deleting link $1 failed: $out"
  fi
}

export_line() { printf 'export CLUSTERDUCK_SSH_CONFIG=%s/ssh_config\n' "$STATE"; }

cmd_up() {
  local n=${1:-3}
  [[ $n =~ ^[0-9]+$ ]] && ((n >= 1 && n <= MAX_HOSTS)) || die "up: N must be a number from 1 to $MAX_HOSTS, got '$n'"
  need_root up "$@"
  need_tools
  check_prefix
  # Only the export line goes to stdout: eval "$(testnet.sh up)".
  exec 3>&1 1>&2
  take_lock
  # Hosts that are up keep their subnet unless another one is asked for.
  if [[ -z ${CLUSTERDUCK_TESTNET_PREFIX:-} && -s $STATE/prefix ]]; then
    PREFIX=$(<"$STATE/prefix")
    check_prefix
  fi
  if [[ -s $STATE/prefix && $(<"$STATE/prefix") != "$PREFIX" ]]; then
    die "test hosts are up on $(<"$STATE/prefix").0/24, not $PREFIX.0/24: run \`$0 down\` first"
  fi
  check_subnet_free
  mkdir -p -m 0755 /run/sshd || die "cannot create /run/sshd (sshd's privilege separation directory)"

  local k
  for k in $(existing_hosts); do
    ((k <= n)) || remove_host "$k"
  done
  ensure_bridge
  ensure_keys
  for ((k = 1; k <= n; k++)); do
    ensure_host "$k"
  done
  write_client_files "$n"
  for ((k = 1; k <= n; k++)); do
    wait_ssh "$k" ||
      die "host $(host_ns "$k") ($(host_addr "$k")) does not answer ssh from the root namespace: $SSH_ERR (sshd log: $(host_dir "$k")/sshd.log)"
  done
  # Each host reaches the next over the bridge (not only the master them).
  if ((n >= 2)); then
    for ((k = 1; k <= n; k++)); do
      wait_ssh $((k % n + 1)) "$(host_ns "$k")" ||
        die "host $(host_ns "$k") cannot reach $(host_ns $((k % n + 1))) over $BRIDGE: $SSH_ERR (is net.bridge.bridge-nf-call-iptables on with a DROP forward policy?)"
    done
  fi
  log "up: $n hosts, cd-h1..cd-h$n at $(host_addr 1)..$(host_addr "$n"), ssh config $STATE/ssh_config"
  export_line >&3
}

cmd_down() {
  need_root down
  command -v ip >/dev/null || die "\`ip\` not found: install Debian package iproute2"
  command -v flock >/dev/null || die "\`flock\` not found: install Debian package util-linux"
  take_lock
  local k veth
  local pid
  for k in $(existing_hosts); do
    remove_host "$k"
  done
  for pid in $(stray_sshd_pids); do
    log "stopping a test host's sshd left outside its host (pid $pid)"
    stop_pid "$pid"
  done
  # Outer veth ends left without their namespace.
  for veth in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed -n 's/^\(cd-v[0-9][0-9]*\)\(@.*\)\{0,1\}$/\1/p'); do
    del_link "$veth"
  done
  if ip link show "$BRIDGE" >/dev/null 2>&1; then
    log "removing bridge $BRIDGE"
    del_link "$BRIDGE"
  fi
  rm -rf "$STATE"
  rm -f "$LOCK"
  log "down"
}

cmd_status() {
  need_root status
  command -v ip >/dev/null || die "\`ip\` not found: install Debian package iproute2"
  if [[ -s $STATE/prefix ]]; then PREFIX=$(<"$STATE/prefix"); fi
  local hosts k ns pid addr ok=0
  hosts=$(existing_hosts)
  if [[ -z $hosts ]]; then
    echo "down: no test hosts"
    return 1
  fi
  if [[ -s $STATE/count ]]; then
    # Expected hosts that are missing, then every host that exists.
    for ((k = 1; k <= $(<"$STATE/count"); k++)); do
      grep -qx "$k" <<<"$hosts" || {
        echo "$(host_ns "$k"): MISSING (no network namespace)"
        ok=1
      }
    done
  else
    echo "state $STATE: MISSING (run up again)"
    ok=1
  fi
  if ip -o -4 addr show dev "$BRIDGE" 2>/dev/null | grep -q .; then
    echo "bridge $BRIDGE: $(ip -o -4 addr show dev "$BRIDGE" | awk '{print $4}')"
  else
    echo "bridge $BRIDGE: missing"
    ok=1
  fi
  for k in $hosts; do
    ns=$(host_ns "$k")
    addr=$(ip netns exec "$ns" ip -o -4 addr show dev eth0 2>/dev/null | awk '{print $4}' | paste -sd' ')
    local line="$ns: address ${addr:-none}"
    if pid=$(live_sshd_pid "$k"); then line+=", sshd pid $pid"; else
      line+=", sshd not running"
      ok=1
    fi
    if [[ -s $STATE/ssh_config ]] && ssh -F "$STATE/ssh_config" "$ns" true </dev/null >/dev/null 2>&1; then
      line+=", ssh ok"
    else
      line+=", ssh FAILS"
      ok=1
    fi
    echo "$line"
  done
  [[ -s $STATE/ssh_config ]] && echo "ssh config: $STATE/ssh_config"
  return "$ok"
}

cmd_env() {
  [[ -s $STATE/ssh_config ]] || die "test hosts are not up (no $STATE/ssh_config): run \`$0 up\`"
  export_line
}

main() {
  local cmd=${1:-}
  [[ $# -eq 0 ]] || shift
  case $cmd in
  up)
    (($# <= 1)) || die "up takes at most one argument, N (see --help)"
    cmd_up "$@"
    ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) cmd_env ;;
  -h | --help | help) usage ;;
  "")
    usage >&2
    exit 2
    ;;
  *)
    printf 'testnet: error: unknown command %q\n' "$cmd" >&2
    usage >&2
    exit 2
    ;;
  esac
}

main "$@"
