#!/usr/bin/env bash
# What constrained decoding costs a served model (benches/constrained_speed.py): free text
# against JSON mode against a JSON schema on one `smelt serve`, in one run.
# Usage: benches/constrained_speed.sh [BIN] [ROUNDS] [CONC]   (BIN defaults to target/release/smelt)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/smelt}
"$bin" -q serve smollm2-135m --port 8431 -t 2 --max-num-seqs 16 & pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 60); do curl -sf http://127.0.0.1:8431/health >/dev/null 2>&1 && break; sleep 1; done
python3 benches/constrained_speed.py "${2:-4}" "${3:-1}" smelt=http://127.0.0.1:8431
