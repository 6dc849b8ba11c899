#!/usr/bin/env bash
# Builds llama.cpp tools for side-by-side comparisons, outside the repository, and prints the
# directory that holds them. Sources: the PyPI sdist of llama-cpp-python 0.3.36 (its vendored
# llama.cpp), fetched once into $SMELT_HOME/anchors. The build is native but without AMX: AMX tile
# instructions fault (SIGILL) where the kernel does not grant the tile state, as on these VMs.
# Needs cmake and a C++ compiler. Nothing of llama.cpp is committed.
#
# Usage: benches/llamacpp_native.sh TARGET...   (e.g. llama-bench llama-completion)
set -euo pipefail
home=${SMELT_HOME:-$HOME/.cache/smelt}
anchors="$home/anchors"
src="$anchors/llama_cpp_python-0.3.36/vendor/llama.cpp"
build="$anchors/llama.cpp-bench-build"
missing=()
for t in "$@"; do
  [ -x "$build/bin/$t" ] || missing+=("$t")
done
if [ ${#missing[@]} -gt 0 ]; then
  mkdir -p "$anchors"
  if [ ! -d "$src" ]; then
    python3 -m pip download --no-deps --no-binary llama-cpp-python llama-cpp-python==0.3.36 -d "$anchors" -q
    tar xzf "$anchors/llama_cpp_python-0.3.36.tar.gz" -C "$anchors"
  fi
  echo "building ${missing[*]} (once, several minutes on 2 cores)..." >&2
  native="-march=native -mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
  cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DLLAMA_CURL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=ON \
    -DCMAKE_C_FLAGS="$native" -DCMAKE_CXX_FLAGS="$native" > /dev/null
  cmake --build "$build" --target "${missing[@]}" -j "$(nproc)" > /dev/null
fi
echo "$build/bin"
