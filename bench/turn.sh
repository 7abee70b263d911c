#!/usr/bin/env bash
# bench/turn.sh: TURN relay throughput and CPU of `punchline serve` against
# coturn's turnserver, side by side in one run under the same load.
#
# Load: coturn's turnutils_uclient relaying to turnutils_peer (an echo
# server) on 127.0.0.1, by default 20 clients x 5000 messages of 172 bytes
# sent back to back (-m 20 -n 5000 -l 172 -z 0). Each message crosses the
# relay twice (client->peer, then the echo peer->client), so
#   relayed packets/s = (messages sent + messages received) / active seconds
# where the active time runs from uclient's last progress line before it
# sent anything to its first line showing the final received count (its
# progress lines carry whole seconds, so use enough messages for runs of
# several seconds). Wall time is not used: uclient waits about 10 s for
# stragglers after any loss, which would swamp the comparison.
# CPU is the server process's user+system time during the run, from
# /proc/PID/stat. Runs alternate punchline, coturn, punchline, coturn...
# (ROUNDS pairs) so that machine noise hits both; the medians are compared.
#
# Both servers are configured as equals: UDP listener on loopback,
# long-term credentials for the same user, loopback peers allowed, no TLS,
# relay threads per CPU (coturn's default, punchline's SO_REUSEPORT read
# loops). coturn runs in the foreground on its own free port with its own
# temporary config and user database; no system service is touched.
# punchline runs with its default per-allocation bandwidth cap (4 MB/s
# each way); its drop counter is printed so a capped run would show.
#
# With --parallel P, P uclient processes run at once (each with the -m
# clients), to push the servers harder than one uclient process can.
#
# Usage: bench/turn.sh [--rounds N] [--clients M] [--messages N]
#                      [--length L] [--parallel P] [--bin PATH]
# Needs coturn (turnserver, turnutils_uclient, turnutils_peer), python3.
# Output ends with machine-readable lines:
#   RESULT punchline pps=P cpu_s=C cpu_us_per_pkt=U lost=L
#   RESULT coturn pps=P cpu_s=C cpu_us_per_pkt=U lost=L
#   RESULT ratio punchline/coturn pps=X cpu_per_pkt=Y
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
rounds=3
clients=20
messages=5000
length=172
parallel=1
bin=""
while [ $# -gt 0 ]; do
	case "$1" in
	--rounds) rounds=$2; shift ;;
	--clients) clients=$2; shift ;;
	--messages) messages=$2; shift ;;
	--length) length=$2; shift ;;
	--parallel) parallel=$2; shift ;;
	--bin) bin=$2; shift ;;
	-h|--help) sed -n '2,32p' "$0"; exit 0 ;;
	*) echo "unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done
for tool in turnserver turnutils_uclient turnutils_peer python3; do
	command -v "$tool" >/dev/null || { echo "$tool not found (apt-get install coturn python3)" >&2; exit 1; }
done

work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT
# KEEP=1 keeps the work directory (logs, configs) for inspection.
[ -n "${KEEP:-}" ] && trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; echo "kept $work" >&2' EXIT

# freeport prints a port free for both UDP and TCP on 127.0.0.1.
freeport() {
	python3 -c 'import socket
for _ in range(50):
    u=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); u.bind(("127.0.0.1",0)); p=u.getsockname()[1]
    t=socket.socket()
    try:
        t.bind(("127.0.0.1",p)); t.close(); u.close(); print(p); break
    except OSError: u.close(); t.close()'
}

# cpu_ticks PID: user+system clock ticks of a process so far.
cpu_ticks() {
	awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}
hz=$(getconf CLK_TCK)

# wait_udp PORT: waits until something answers an (invalid) datagram or
# the port is bound, up to 10 s.
wait_bound() {
	for _ in $(seq 100); do
		if ss -Hlun "sport = :$1" | grep -q .; then return 0; fi
		sleep 0.1
	done
	echo "nothing listening on udp port $1" >&2
	exit 1
}

if [ -z "$bin" ]; then
	bin="$work/punchline"
	(cd "$here" && go build -o "$bin" ./cmd/punchline)
fi

# One account per uclient process and round: -m 20 clients make 40
# allocations (RTP and RTCP), inside punchline's default quota of 64 per
# user, and allocations a loaded run leaves behind (their deallocation
# lost) expire only after 10 minutes, so a new round takes fresh accounts.
user=bench
pass=benchpw
realm=punchline

# The echo peer both servers relay to.
peer_port=$(freeport)
turnutils_peer -L 127.0.0.1 -p "$peer_port" >/dev/null 2>&1 &
pids+=($!)
wait_bound "$peer_port"

# punchline serve, relay only.
pl_port=$(freeport)
pl_http=$(freeport)
accounts=()
for r in $(seq "$rounds"); do
	for i in $(seq "$parallel"); do
		accounts+=("${user}r${r}p$i")
	done
done
for a in "${accounts[@]}"; do
	"$bin" user add "$a" --password "$pass" --realm "$realm" --data "$work/data" >/dev/null
done
"$bin" serve --data "$work/data" --realm "$realm" --sip "" --http "127.0.0.1:$pl_http" \
	--turn "udp:127.0.0.1:$pl_port" --turn-allow-peer 127.0.0.0/8 --log-level warn \
	>"$work/punchline.log" 2>&1 &
pl_pid=$!
pids+=($pl_pid)
wait_bound "$pl_port"

# coturn, configured as the equal of the above.
ct_port=$(freeport)
cat >"$work/turnserver.conf" <<EOF
listening-ip=127.0.0.1
listening-port=$ct_port
relay-ip=127.0.0.1
realm=$realm
lt-cred-mech
fingerprint
$(for a in "${accounts[@]}"; do echo "user=$a:$pass"; done)
allow-loopback-peers
no-tls
no-dtls
no-cli
no-multicast-peers
user-quota=0
total-quota=0
max-bps=0
userdb=$work/turndb
pidfile=$work/turnserver.pid
log-file=$work/turnserver.log
no-stdout-log
simple-log
EOF
turnserver -c "$work/turnserver.conf" >/dev/null 2>&1 &
ct_pid=$!
pids+=($ct_pid)
wait_bound "$ct_port"

# run NAME PID PORT ROUND: one load run; appends
# "pps cpu_s lost active_s sent recv" to $work/res_NAME.
run() {
	local name=$1 pid=$2 port=$3 round=$4
	local c0 c1 i
	local -a load=() outs=()
	c0=$(cpu_ticks "$pid")
	for i in $(seq "$parallel"); do
		timeout 300 turnutils_uclient -u "${user}r${round}p$i" -w "$pass" -e 127.0.0.1 -r "$peer_port" \
			-p "$port" -m "$clients" -n "$messages" -l "$length" -z 0 127.0.0.1 >"$work/out.$i" 2>&1 &
		load+=($!)
		outs+=("$work/out.$i")
	done
	for i in "${load[@]}"; do wait "$i" || true; done
	c1=$(cpu_ticks "$pid")
	python3 - "$name" "$c0" "$c1" "$hz" "$work/res_$name" "${outs[@]}" <<'PY'
import re, sys
name, c0, c1, hz, res, outs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6:]
progress = re.compile(r"^(\d+): : start_mclient: msz=\d+, tot_send_msgs=(\d+), tot_recv_msgs=(\d+)")
sent = recv = lost = 0
active = 0
for path in outs:
    text = open(path).read()
    lines = [tuple(map(int, m.groups())) for m in map(progress.match, text.splitlines()) if m]
    final = re.findall(r"tot_send_msgs=(\d+), tot_recv_msgs=(\d+)\s*$", text, re.M)
    if not lines or not final:
        sys.exit(f"{name}: turnutils_uclient failed:\n" + "\n".join(text.splitlines()[-5:]))
    s, r = map(int, final[-1])
    start = max((t for t, ts, _ in lines if ts == 0), default=0)
    end = min((t for t, _, tr in lines if tr == r), default=lines[-1][0])
    active = max(active, end - start, 1)
    sent, recv = sent + s, recv + r
    m = re.findall(r"Total lost packets (\d+)", text)
    lost += int(m[-1]) if m else s - r
cpu = (c1 - c0) / hz
pps = (sent + recv) / active
open(res, "a").write(f"{pps:.0f} {cpu:.2f} {lost} {active} {sent} {recv}\n")
print(f"{name:<9} sent {sent} received {recv} lost {lost}, active {active}s: {pps:.0f} pps, server cpu {cpu:.2f}s")
PY
}

echo "load: $parallel x turnutils_uclient -m $clients -n $messages -l $length -z 0, $rounds rounds alternating"
echo "cpus: $(nproc); punchline $pl_port (pid $pl_pid), coturn $ct_port (pid $ct_pid) $(turnserver --version 2>/dev/null | head -1 || true)"
for r in $(seq "$rounds"); do
	run punchline "$pl_pid" "$pl_port" "$r"
	run coturn "$ct_pid" "$ct_port" "$r"
done

dropped=$(curl -s "http://127.0.0.1:$pl_http/metrics" 2>/dev/null | awk '/^punchline_turn_bandwidth_dropped_packets_total/ {s += $2} END {print s + 0}')
echo "punchline bandwidth-cap drops during the runs: $dropped"
curl -s "http://127.0.0.1:$pl_http/metrics" 2>/dev/null | grep '^punchline_turn_relayed_packets_total' || true

python3 - "$work/res_punchline" "$work/res_coturn" <<'PY'
import statistics, sys
def load(path):
    rows = [line.split() for line in open(path)]
    pps = statistics.median(float(r[0]) for r in rows)
    cpu = statistics.median(float(r[1]) for r in rows)
    # CPU per relayed packet, median over runs.
    per = statistics.median(float(r[1]) * 1e6 / (int(r[4]) + int(r[5])) for r in rows)
    return pps, cpu, per, sum(int(r[2]) for r in rows)
pl, ct = load(sys.argv[1]), load(sys.argv[2])
for name, v in (("punchline", pl), ("coturn", ct)):
    print(f"RESULT {name} pps={v[0]:.0f} cpu_s={v[1]:.2f} cpu_us_per_pkt={v[2]:.2f} lost={v[3]}")
print(f"RESULT ratio punchline/coturn pps={pl[0] / ct[0]:.2f} cpu_per_pkt={pl[2] / ct[2] if ct[2] else float('nan'):.2f}")
PY
