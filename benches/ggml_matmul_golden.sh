#!/usr/bin/env bash
# Writes crates/smelt-kernels/tests/data/ggml_matmul.bin (or, with `f32`, ggml_matmul_f32.bin):
# ggml's own quantized matrix products
# (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL with 544 or 576 columns; Q2_K, Q3_K, Q4_K, Q5_K, Q6_K,
# IQ4_XS with 512; F32 with 528 or 540; 13, 24 and 48 rows;
# batches of 1 to 17 tokens), for tests/ggml_matmul_golden.rs. The layout is at the top of
# benches/ggml_matmul.c, which does the work against the ggml libraries that
# benches/llamacpp_native.sh builds outside the repository (llama-cpp-python 0.3.36's vendored
# llama.cpp, x86-64 with AVX-512, no AMX). 2 threads; 1, 2 and 4 give the same bytes.
# The two files come from different builds: ggml_matmul.bin was written on 2026-11-28 on a
# machine whose `-march=native` build this machine's (Xeon with AVX512-FP16 and AMX, AMX off)
# does not reproduce in two places: one Q4_K matrix quantized otherwise by ggml_quantize_chunk, and one
# IQ4_NL one-token product of 13 (the compiler's handling of vec_dot's scalar tail), where smelt
# keeps the first build's bits; ggml_matmul_f32.bin was written here on 2026-11-29.
# Usage: benches/ggml_matmul_golden.sh [f32]
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/llamacpp_common.sh
llamacpp_tools llama-completion
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
llamacpp_cc ggml_matmul ggml ggml-base ggml-cpu
if [ "${1:-}" = f32 ]; then
  out=crates/smelt-kernels/tests/data/ggml_matmul_f32.bin
  "$work/ggml_matmul" 2 "$out.tmp" f32 2> "$work/log"
else
  out=crates/smelt-kernels/tests/data/ggml_matmul.bin
  "$work/ggml_matmul" 2 "$out.tmp" 2> "$work/log"
fi
echo "$(grep -c ': repacked' "$work/log") of $(grep -c ' rows ' "$work/log") matrices repacked by ggml:" \
  "$(grep ': repacked' "$work/log" | cut -d: -f1 | paste -sd ',')"
mv "$out.tmp" "$out"
echo "$out: $(stat -c %s "$out") bytes"
