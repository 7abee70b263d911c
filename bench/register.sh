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
#   RESULT punchline max_rate=R achieved=A
#   RESULT kamailio max_rate=R achieved=A
#   RESULT ratio punchline/kamailio=X
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

# run_rate TARGET RATE: prints "ok ACHIEVED" or "fail WHY".
run_rate() {
	local target=$1 rate=$2
	local n=$((rate * duration))
	local port; port=$(freeport)
	local d="$work/sipp-$rate-$RANDOM"; mkdir -p "$d"
	local rc=0
	(cd "$d" && timeout $((duration * 4 + 30)) sipp -nostdin -sf "$here/testdata/sipp/register_auth.xml" \
		-inf "$3" -i 127.0.0.1 -p "$port" -t u1 -r "$rate" -m "$n" -l $((rate * 2)) \
		-timeout $((duration * 3 + 20))s -trace_stat -stf stat.csv -fd 1 -trace_err "$target" >out.txt 2>&1) || rc=$?
	local stat; stat=$(tail -n 1 "$d/stat.csv" 2>/dev/null || true)
	local head; head=$(head -n 1 "$d/stat.csv" 2>/dev/null || true)
	if [ -z "$stat" ]; then echo "fail no-stats(rc=$rc)"; return; fi
	# On failure, show what sipp complained about (first lines of its error
	# trace) on stderr.
	if [ "$rc" != 0 ]; then cat "$d"/*errors* 2>/dev/null | head -n 5 | cut -c1-200 >&2 || true; fi
	python3 - "$head" "$stat" "$n" "$rc" "$rate" <<'PY'
import sys
head=sys.argv[1].split(';'); row=sys.argv[2].split(';'); n=int(sys.argv[3]); rc=int(sys.argv[4])
v=dict(zip(head,row))
ok=int(v.get('SuccessfulCall(C)','0')); failed=int(v.get('FailedCall(C)','0'))
retr=int(v.get('Retransmissions(C)','0'))
# elapsed seconds: CurrentTime minus StartTime ("date\ttime\tepoch")
el=float(v['CurrentTime'].split('\t')[-1])-float(v['StartTime'].split('\t')[-1])
ach=ok/el if el>0 else 0
# A rate passes with every registration completed, none failed, and the
# achieved rate within 5% of the target (retransmissions are reported: on
# a loaded machine a few appear at any rate, for Kamailio as well).
if ok==n and failed==0 and rc==0 and ach>=0.95*float(sys.argv[5]):
    print("ok %.0f retrans=%d" % (ach,retr))
else:
    print("fail ok=%d/%d failed=%d retrans=%d rc=%d achieved=%.0f" % (ok,n,failed,retr,rc,ach))
PY
}

# sweep NAME TARGET CSV: tries the rates in order, stops at the first
# failure, prints the RESULT line.
sweep() {
	local name=$1 target=$2 csv=$3 best=0 bestach=0
	for r in $rates; do
		local res; res=$(run_rate "$target" "$r" "$csv")
		echo "$name rate $r/s: $res" >&2
		case "$res" in
		ok*) best=$r; bestach=$(echo "$res" | awk '{print $2}') ;;
		*) break ;;
		esac
	done
	echo "RESULT $name max_rate=$best achieved=$bestach"
}

port=$(freeport)
PUNCHLINE_SIP_RATE_LIMIT=off "$bin" serve --data "$data" --turn "" --http "" \
	--sip "udp:127.0.0.1:$port" --log-level warn 2>"$work/serve.log" &
pids+=($!)
for _ in $(seq 100); do grep -q "punchline ready" "$work/serve.log" && break; sleep 0.1; done
grep -q "punchline ready" "$work/serve.log" || { cat "$work/serve.log" >&2; exit 1; }
pl=$(sweep punchline "127.0.0.1:$port" "$csv_pl")
echo "$pl"
kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true; pids=()

if [ "$kam" = 1 ]; then
	command -v kamailio >/dev/null || { echo "kamailio not found" >&2; exit 1; }
	kport=$(freeport)
	mkdir -p "$work/kam"
	kamailio -DD -E -f "$here/bench/register_kamailio.cfg" -l "udp:127.0.0.1:$kport" \
		-P "$work/kam/kamailio.pid" -Y "$work/kam" -w "$work/kam" -m 256 -M 16 \
		-A 'REG_PASSWORD="benchpw"' 2>"$work/kam.log" &
	pids+=($!)
	sleep 2
	kill -0 "${pids[0]}" 2>/dev/null || { cat "$work/kam.log" >&2; exit 1; }
	km=$(sweep kamailio "127.0.0.1:$kport" "$csv_kam")
	echo "$km"
	a=$(echo "$pl" | sed 's/.*achieved=//'); b=$(echo "$km" | sed 's/.*achieved=//')
	python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print('RESULT ratio punchline/kamailio=%.2f' % (a/b if b else 0))" "$a" "$b"
fi
