#!/usr/bin/env bash
# Conference mesh benchmark: for N = 2..8 participants on the real
# registrar/proxy/focus (in one process, loopback), what each participant
# uploads, what the server carries, and CPU per participant, beside an SFU
# (the server sends N(N-1) streams) and a mixer (N streams in, N out).
# Prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(go test -run '^$' -bench 'Mesh' -benchtime 1x ./bench/mesh/ 2>/dev/null | grep '^BenchmarkMesh/')
echo "| N | mesh upload/participant (measured, UDP payload) | mesh upload/participant (wire, computed) | punchline server media | CPU/participant | SFU server out | SFU server in | mixer server in+out |"
echo "|---|---|---|---|---|---|---|---|"
echo "$out" | awk '{
  n=$1; sub(/.*N=/,"",n); sub(/-.*/,"",n);
  for (i=2;i<=NF;i++) { v[$(i)]=$(i-1) }
  printf "| %s | %.0f kbit/s | %.0f kbit/s | %.0f kbit/s | %.1f%% | %.0f kbit/s | %.0f kbit/s | %.0f kbit/s |\n", n,
    v["upload_kbps/participant"], v["mesh_upload_wire_kbps"], v["server_media_kbps"], v["cpu_%/participant"],
    v["sfu_server_out_kbps"], v["sfu_server_in_kbps"], v["mixer_server_kbps"]
}'
