#!/usr/bin/env bash
# Benchmark + cross-check: `smelt gguf quantize` against llama.cpp's `llama-quantize` on SmolLM2,
# F16 -> MIX (default Q4_K_M), timed side by side in the same run (alternating, best of N), and
# every output tensor compared byte for byte (gguf-py reads both files).
#
# llama.cpp is built outside the repository from the PyPI sdist of llama-cpp-python (its vendored
# sources), into $SMELT_HOME/anchors; nothing of it is committed. Needs cmake and a C++ compiler.
# SOURCE, if given, is quantized instead of SmolLM2 in F16 (e.g. the F32 Mixtral-style model of
# benches/llamacpp_golden.sh, to check the 8-expert rules and 3-D expert tensors).
# Usage: benches/gguf_quantize_vs_llamacpp.sh [MIX] [REPEATS] [SOURCE]
set -euo pipefail
cd "$(dirname "$0")/.."
mix=${1:-Q4_K_M}
reps=${2:-3}
home=${SMELT_HOME:-$HOME/.cache/smelt}
anchors="$home/anchors"
src="$anchors/llama_cpp_python-0.3.36/vendor/llama.cpp"
build="$anchors/llama.cpp-build"
quant="$build/bin/llama-quantize"
if [ ! -x "$quant" ]; then
  mkdir -p "$anchors"
  if [ ! -d "$src" ]; then
    python3 -m pip download --no-deps --no-binary llama-cpp-python llama-cpp-python==0.3.36 -d "$anchors" -q
    tar xzf "$anchors/llama_cpp_python-0.3.36.tar.gz" -C "$anchors"
  fi
  # Portable build without fused multiply-add contraction, so its reference quantizers compute
  # in plain IEEE single precision like smelt's (and like the golden vectors).
  cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DLLAMA_CURL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
    -DCMAKE_C_FLAGS=-ffp-contract=off -DCMAKE_CXX_FLAGS=-ffp-contract=off > /dev/null
  cmake --build "$build" --target llama-quantize -j "$(nproc)" > /dev/null
fi
cargo build --release -q
smelt=target/release/smelt
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ -n "${3:-}" ]; then
  cp "$3" "$work/f16.gguf"
else
  $smelt -q gguf quantize smollm2-135m "$work/f16.gguf" F16 --allow-requantize > /dev/null
fi
threads=$(nproc)
best_smelt=999999; best_llama=999999
for i in $(seq "$reps"); do
  t0=$(date +%s.%N)
  $smelt -q --runs-dir "$work/runs" gguf quantize "$work/f16.gguf" "$work/smelt.gguf" "$mix" --threads "$threads" > /dev/null
  t1=$(date +%s.%N)
  "$quant" "$work/f16.gguf" "$work/llama.gguf" "$mix" "$threads" > "$work/llama.log" 2>&1
  t2=$(date +%s.%N)
  best_smelt=$(python3 -c "print(min($best_smelt, $t1 - $t0))")
  best_llama=$(python3 -c "print(min($best_llama, $t2 - $t1))")
done
py=${SMELT_TEST_PYTHON:-.venv/bin/python}
"$py" - "$work/smelt.gguf" "$work/llama.gguf" <<'PY'
import sys
from gguf import GGUFReader
a, b = GGUFReader(sys.argv[1]), GGUFReader(sys.argv[2])
ta = {t.name: t for t in a.tensors}
tb = {t.name: t for t in b.tensors}
assert ta.keys() == tb.keys(), "tensor names differ"
same = sum(1 for n in ta if ta[n].tensor_type == tb[n].tensor_type and bytes(ta[n].data.tobytes()) == bytes(tb[n].data.tobytes()))
types = sum(1 for n in ta if ta[n].tensor_type == tb[n].tensor_type)
print(f"tensors: {len(ta)}; same type: {types}; byte-identical: {same}")
order = [t.name for t in a.tensors] == [t.name for t in b.tensors]
print(f"same tensor order: {order}")
PY
echo "F16 -> $mix on $threads threads, best of $reps: smelt $(printf %.2f "$best_smelt") s, llama-quantize $(printf %.2f "$best_llama") s, ratio $(python3 -c "print(f'{$best_smelt/$best_llama:.2f}')")x"
