#!/usr/bin/env bash
# Load on `rnnkit serve` with oha, on loopback, bounded in requests: requests/s and p50/p99
# latency for classify, tag and translate (beam 5) with 1, 8 and 32 concurrent clients, one
# input a request (so that the server's batching gathers concurrent requests).
# Usage: tools/serve_load.sh URL [N]   (a server with models named sst, ner and de-en;
#        ONLY=translate runs one verb)
set -euo pipefail
url=${1:?URL}; n=${2:-200}
lscpu | grep -m1 "Model name"
for spec in \
  'sst classify {"inputs": ["a gorgeous , witty , seductive movie ."]}' \
  'ner tag {"inputs": ["EU rejects German call to boycott British lamb ."]}' \
  'de-en translate {"inputs": ["Ein Mann fährt auf einem Fahrrad die Straße hinunter."], "beam": 5}'; do
  read -r model verb body <<<"$spec"
  [ -n "${ONLY:-}" ] && [ "$verb" != "$ONLY" ] && continue
  for c in 1 8 32; do
    k=$n; [ "$verb" = translate ] && k=$((n / 2))
    oha -n "$k" -c "$c" --worker-threads 1 -m POST -T application/json -d "$body" --no-tui \
      --output-format json "$url/v1/models/$model/$verb" |
      python3 -c "import json,sys; r=json.load(sys.stdin); s=r['summary']; p=r['latencyPercentiles']; codes=r.get('statusCodeDistribution',{}); print(f\"$model $verb clients $c: {s['requestsPerSec']:.1f} req/s  p50 {p['p50']*1000:.1f} ms  p99 {p['p99']*1000:.1f} ms  statuses {codes}\")"
  done
done
