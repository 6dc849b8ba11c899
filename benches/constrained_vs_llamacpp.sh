#!/usr/bin/env bash
# Constrained decoding side by side: `smelt serve` and llama.cpp's llama-server (which turns a
# response_format's JSON schema into a GBNF grammar) on the same GGUF, same machine, same
# requests, taking turns (benches/constrained_speed.py): time between streamed tokens in free
# text, JSON mode and a JSON schema, each against its own free text, and smelt over llama.cpp.
# llama-server is built outside the repository by benches/llamacpp_native.sh.
# Usage: benches/constrained_vs_llamacpp.sh [ROUNDS] [CONC]
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/llamacpp_common.sh
llamacpp_tools llama-server
smelt_and_scratch
gguf=$(ls "${SMELT_HOME:-$HOME/.cache/smelt}"/assets/smollm2-135m/*.gguf | head -1)
conc=${2:-1}
"$smelt" -q serve "$gguf" --port 8441 -t 2 --max-num-seqs "$conc" & p1=$!
LD_LIBRARY_PATH="$bin" "$bin/llama-server" -m "$gguf" --port 8442 -t 2 -tb 2 -np "$conc" \
  -c $(( 2048 * conc )) --no-webui > "$work/llama-server.log" 2>&1 & p2=$!
trap 'kill $p1 $p2 2>/dev/null || true; rm -rf "$work"' EXIT
for port in 8441 8442; do
  for _ in $(seq 120); do curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break; sleep 1; done
done
echo "model: $gguf; 2 threads each; $conc at once"
python3 benches/constrained_speed.py "${1:-3}" "$conc" smelt=http://127.0.0.1:8441 llama.cpp=http://127.0.0.1:8442
