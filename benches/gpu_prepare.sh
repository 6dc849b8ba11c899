#!/usr/bin/env bash
# Builds smelt here for a GPU machine that has no Rust toolchain: a release build (default
# features include `cuda`; cudarc loads libcuda and libnvrtc at run time) with the debug
# information stripped into target/gpu/smelt, small enough to carry (the unstripped binary is
# over 100 MB). Then, on the GPU machine, from the repository root:
#
#   benches/gpu.sh target/gpu/smelt "$OUT"
#
# Before spending device time, `target/gpu/smelt gpu check --emulate` runs the same kernel
# checks on the CPU emulator here.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p smelt-cli
mkdir -p target/gpu
objcopy --strip-debug target/release/smelt target/gpu/smelt.tmp
mv target/gpu/smelt.tmp target/gpu/smelt
ls -l target/gpu/smelt
target/gpu/smelt gpu check --emulate | tail -1
