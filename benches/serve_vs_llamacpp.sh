#!/usr/bin/env bash
# smelt serve next to llama.cpp's llama-server on the same GGUF, same machine, same load, in
# one run: both servers up with the same threads, then `smelt bench serve` (vLLM's serving
# metrics) against each in turn, twice, so drift on a shared machine hits both alike.
# llama-server is built outside the repository by benches/llamacpp_native.sh.
#
# Usage: benches/serve_vs_llamacpp.sh [MODEL.gguf|asset] [CONCURRENCY] [NUM_PROMPTS] [INPUT] [OUTPUT]
#   e.g. benches/serve_vs_llamacpp.sh smollm2-135m 8 32 128 64
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-smollm2-135m}
conc=${2:-8}
num=${3:-32}
input=${4:-128}
output=${5:-64}
threads=${THREADS:-2}
smelt=${SMELT:-target/release/smelt}
[ -x "$smelt" ] || cargo build --release -q -p smelt-cli
bin=$(benches/llamacpp_native.sh llama-server)
gguf=$model
if [ ! -f "$gguf" ]; then
  dir=$("$smelt" -q fetch "$model" >/dev/null && echo "${SMELT_HOME:-$HOME/.cache/smelt}/assets/$model")
  gguf=$(ls "$dir"/*.gguf | head -1)
fi
port_s=${PORT_SMELT:-8301}
port_l=${PORT_LLAMA:-8302}
ctx_per_seq=$(( (input + output) * 2 ))
"$smelt" -q serve "$gguf" --port "$port_s" -t "$threads" --max-num-seqs "$conc" --served-model-name bench &
pid_s=$!
LD_LIBRARY_PATH="$bin" "$bin/llama-server" -m "$gguf" --port "$port_l" -t "$threads" -tb "$threads" \
  -np "$conc" -c $(( ctx_per_seq * conc )) --alias bench --no-webui > /tmp/llama-server.log 2>&1 &
pid_l=$!
trap 'kill $pid_s $pid_l 2>/dev/null || true' EXIT
for port in "$port_s" "$port_l"; do
  for _ in $(seq 120); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
    sleep 1
  done
done
echo "model: $gguf; threads $threads; concurrency $conc; $num prompts of $input tokens, $output out"
args=(--model bench --concurrency "$conc" --num-prompts "$num" --input-len "$input" --output-len "$output")
# Warm-up (first touches of the mapped weights), not reported.
for port in "$port_s" "$port_l"; do
  "$smelt" -q bench serve --url "http://127.0.0.1:$port" --model bench --concurrency 2 --num-prompts 4 \
    --input-len 32 --output-len 8 --seed 99 > /dev/null
done
# Each round has its own prompts (seed = round), so neither server's prompt cache helps.
for round in 1 2; do
  for who in smelt llama; do
    port=$port_s; [ "$who" = llama ] && port=$port_l
    echo "### round $round: $who"
    "$smelt" -q bench serve --url "http://127.0.0.1:$port" "${args[@]}" --seed "$round" | tee "/tmp/serve-bench-$who-$round.txt"
  done
done
get() { grep "$1" "$2" | awk '{print $NF}'; }
echo
echo "| round | metric | smelt | llama-server | smelt / llama |"
echo "|---|---|---|---|---|"
for round in 1 2; do
  for m in "Output token throughput" "Median TTFT" "Median TPOT" "P99 TTFT" "P99 TPOT"; do
    s=$(get "$m" "/tmp/serve-bench-smelt-$round.txt"); l=$(get "$m" "/tmp/serve-bench-llama-$round.txt")
    echo "| $round | $m | $s | $l | $(python3 -c "print(f'{$s/$l:.2f}')") |"
  done
done
