#!/usr/bin/env bash
# bench/register.sh: authenticated REGISTER throughput of `punchline serve`
# measured with sipp on this machine, and optionally of Kamailio doing the
# same work, with the ratio.
#
# For each target rate sipp runs the testdata/sipp/register_auth.xml
# scenario (REGISTER, 401, REGISTER with digest credentials, 200) for
# DURATION seconds over UDP on 127.0.0.1. A rate passes when every
# registration succeeded, none failed and sipp achieved at least 95% of
# the target rate; retransmissions are printed. The script reports the
# highest passing rate and the registrations per second achieved at it.
#
# Usage: bench/register.sh [--kamailio] [--users N] [--duration S]
#                          [--rates "1000 2000 ..."] [--bin PATH]
# Needs sipp (Debian sip-tester); --kamailio needs kamailio.
# Output ends with machine-readable lines:
#   RESULT punchline max_rate=R achieved=A cpu_us_per_reg=C
#   RESULT kamailio max_rate=R achieved=A cpu_us_per_reg=C
#   RESULT ratio punchline/kamailio=X          (of the achieved rates)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
users=1000
duration=5
rates="1000 2000 3000 4000 5000 6000 7000 8000 9000 10000 12000"
kam=0
bin=""
while [ $# -gt 0 ]; do
	case "$1" in
	--kamailio) kam=1 ;;
	--users) users=$2; shift ;;
	--duration) duration=$2; shift ;;
	--rates) rates=$2; shift ;;
	--bin) bin=$2; shift ;;
	-h|--help) sed -n '2,20p' "$0"; exit 0 ;;
	*) echo "unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done
command -v sipp >/dev/null || { echo "sipp not found: apt-get install sip-tester" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT
[ -n "${KEEP:-}" ] && trap - EXIT

freeport() {
	python3 -c 'import socket
for _ in range(50):
    u=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); u.bind(("127.0.0.1",0)); p=u.getsockname()[1]
    t=socket.socket(); 
    try:
        t.bind(("127.0.0.1",p)); t.close(); u.close(); print(p); break
    except OSError: u.close(); t.close()'
}

if [ -z "$bin" ]; then
	bin="$work/punchline"
	(cd "$here" && go build -o "$bin" ./cmd/punchline)
fi

# Users: name;[authentication ...] lines for sipp (see the scenario).
csv_pl="$work/users_pl.csv"
csv_kam="$work/users_kam.csv"
echo SEQUENTIAL >"$csv_pl"
echo SEQUENTIAL >"$csv_kam"
data="$work/data"
for i in $(seq -w 1 "$users"); do
	echo "bench$i;[authentication username=bench$i password=pw$i]" >>"$csv_pl"
	echo "bench$i;[authentication username=bench$i password=benchpw]" >>"$csv_kam"
done
echo "creating $users accounts..." >&2
# One process per account (each opens the store), one at a time: bbolt
# locks the file, and each takes a few milliseconds.
seq -w 1 "$users" | xargs -I{} "$bin" user add "bench{}" --password "pw{}" --data "$data" >/dev/null

# cpu_ticks PID: CPU time (user+system, in clock ticks) used so far by PID
# and its child processes (Kamailio's workers are children).
cpu_ticks() {
	local total=0 p
	for p in "$1" $(pgrep -P "$1" || true); do
		[ -r "/proc/$p/stat" ] || continue
		total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat")))
	done
	echo "$total"
}
tck=$(getconf CLK_TCK)

# run_rate TARGET RATE CSV SERVERPID: prints "ok ACHIEVED retrans=N
# cpu_us_per_reg=C" or "fail WHY". CPU per registration is the server's
# CPU time over the step divided by the registrations done: unlike the
# rate, it barely depends on how busy the rest of the machine is.
run_rate() {
	local target=$1 rate=$2 spid=$4
	local n=$((rate * duration))
	local c0; c0=$(cpu_ticks "$spid")
	local port; port=$(freeport)
	local d="$work/sipp-$rate-$RANDOM"; mkdir -p "$d"
	local rc=0
	(cd "$d" && timeout $((duration * 4 + 30)) sipp -nostdin -sf "$here/testdata/sipp/register_auth.xml" \
		-inf "$3" -i 127.0.0.1 -p "$port" -t u1 -r "$rate" -m "$n" -l $((rate * 2)) \
		-timeout $((duration * 3 + 20))s -trace_stat -stf stat.csv -fd 1 -trace_err "$target" >out.txt 2>&1) || rc=$?
	local c1; c1=$(cpu_ticks "$spid")
	local stat; stat=$(tail -n 1 "$d/stat.csv" 2>/dev/null || true)
	local head; head=$(head -n 1 "$d/stat.csv" 2>/dev/null || true)
	if [ -z "$stat" ]; then echo "fail no-stats(rc=$rc)"; return; fi
	# On failure, show what sipp complained about (first lines of its error
	# trace) on stderr.
	if [ "$rc" != 0 ]; then cat "$d"/*errors* 2>/dev/null | head -n 5 | cut -c1-200 >&2 || true; fi
	python3 - "$head" "$stat" "$n" "$rc" "$rate" "$((c1 - c0))" "$tck" <<'PY'
import sys
head=sys.argv[1].split(';'); row=sys.argv[2].split(';'); n=int(sys.argv[3]); rc=int(sys.argv[4])
v=dict(zip(head,row))
ok=int(v.get('SuccessfulCall(C)','0')); failed=int(v.get('FailedCall(C)','0'))
retr=int(v.get('Retransmissions(C)','0'))
# elapsed seconds: CurrentTime minus StartTime ("date\ttime\tepoch")
el=float(v['CurrentTime'].split('\t')[-1])-float(v['StartTime'].split('\t')[-1])
ach=ok/el if el>0 else 0
cpu=int(sys.argv[6])/float(sys.argv[7])
cpr=cpu/ok*1e6 if ok else 0
# A rate passes with every registration completed, none failed, and the
# achieved rate within 5% of the target (retransmissions are reported: on
# a loaded machine a few appear at any rate, for Kamailio as well).
if ok==n and failed==0 and rc==0 and ach>=0.95*float(sys.argv[5]):
    print("ok %.0f retrans=%d cpu_us_per_reg=%.0f" % (ach,retr,cpr))
else:
    print("fail ok=%d/%d failed=%d retrans=%d rc=%d achieved=%.0f cpu_us_per_reg=%.0f" % (ok,n,failed,retr,rc,ach,cpr))
PY
}

# Both servers run side by side (an idle one costs nothing) and each rate
# is tried on punchline and then at once on Kamailio, so that both meet the
# same machine load: on a shared machine that load moves the figures more
# than anything else. A system stops at its first failing rate.
port=$(freeport)
PUNCHLINE_SIP_RATE_LIMIT=off "$bin" serve --data "$data" --turn "" --http "" \
	--sip "udp:127.0.0.1:$port" --log-level warn 2>"$work/serve.log" &
pids+=($!)
plpid=$!
for _ in $(seq 100); do grep -q "punchline ready" "$work/serve.log" && break; sleep 0.1; done
grep -q "punchline ready" "$work/serve.log" || { cat "$work/serve.log" >&2; exit 1; }

if [ "$kam" = 1 ]; then
	command -v kamailio >/dev/null || { echo "kamailio not found" >&2; exit 1; }
	kport=$(freeport)
	mkdir -p "$work/kam"
	kamailio -DD -E -f "$here/bench/register_kamailio.cfg" -l "udp:127.0.0.1:$kport" \
		-P "$work/kam/kamailio.pid" -Y "$work/kam" -w "$work/kam" -m 256 -M 16 \
		-A 'REG_PASSWORD="benchpw"' 2>"$work/kam.log" &
	pids+=($!)
	kmpid=$!
	sleep 2
	kill -0 "${pids[-1]}" 2>/dev/null || { cat "$work/kam.log" >&2; exit 1; }
fi

# Warm-up, not counted: two seconds at the first rate for each system, so
# that the first step does not also measure caches filling and the Go heap
# growing to its working size.
first=${rates%% *}
saved=$duration; duration=2
run_rate "127.0.0.1:$port" "$first" "$csv_pl" "$plpid" >/dev/null
[ "$kam" = 1 ] && run_rate "127.0.0.1:$kport" "$first" "$csv_kam" "$kmpid" >/dev/null
duration=$saved

pl_best=0 pl_ach=0 pl_on=1 pl_cpu=0 km_best=0 km_ach=0 km_on=$kam km_cpu=0
for r in $rates; do
	if [ "$pl_on" = 1 ]; then
		res=$(run_rate "127.0.0.1:$port" "$r" "$csv_pl" "$plpid")
		echo "punchline rate $r/s: $res" >&2
		case "$res" in
		ok*) pl_best=$r; pl_ach=$(echo "$res" | awk '{print $2}'); pl_cpu=${res##*=} ;;
		*) pl_on=0 ;;
		esac
	fi
	if [ "$km_on" = 1 ]; then
		res=$(run_rate "127.0.0.1:$kport" "$r" "$csv_kam" "$kmpid")
		echo "kamailio rate $r/s: $res" >&2
		case "$res" in
		ok*) km_best=$r; km_ach=$(echo "$res" | awk '{print $2}'); km_cpu=${res##*=} ;;
		*) km_on=0 ;;
		esac
	fi
	[ "$pl_on" = 0 ] && [ "$km_on" = 0 ] && break
done
echo "RESULT punchline max_rate=$pl_best achieved=$pl_ach cpu_us_per_reg=$pl_cpu"
if [ "$kam" = 1 ]; then
	echo "RESULT kamailio max_rate=$km_best achieved=$km_ach cpu_us_per_reg=$km_cpu"
	python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print('RESULT ratio punchline/kamailio=%.2f' % (a/b if b else 0))" "$pl_ach" "$km_ach"
fi
