#!/usr/bin/env bash
# bench/setup.sh: call setup time of punchline's phone engine, direct and
# relayed, through the real registrar/proxy and relay on loopback; beside
# each, the same calls with pion/ice's default nomination timing, to show
# what the call-tuned ICE settings buy.
#
# setup = INVITE sent -> first RTP received at the caller (median, p90 of
# CALLS calls); dial-to-audio also counts gathering the offer's candidates.
#
# Usage: bench/setup.sh [CALLS]   (default 30)
set -euo pipefail
cd "$(dirname "$0")/.."
calls=${1:-30}
out=$(go test -run '^$' -bench 'CallSetup' -benchtime "${calls}x" ./bench/setup/ | grep '^BenchmarkCallSetup/')
echo "| calls ($calls each) | setup median | setup p90 | dial-to-audio median | calls off the expected route |"
echo "|---|---|---|---|---|"
echo "$out" | awk '{
  name=$1; sub(/^BenchmarkCallSetup\//,"",name); sub(/-[0-9]+$/,"",name);
  for (i=2;i<=NF;i++) { v[$(i)]=$(i-1) }
  printf "| %s | %.1f ms | %.1f ms | %.1f ms | %d |\n", name, v["setup_ms_median"], v["setup_ms_p90"], v["dial_to_audio_ms_median"], v["calls_off_route"]
}'
