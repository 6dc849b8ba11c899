# Sourced (not run) by the scripts that set smelt beside llama.cpp: the setup lines they share.
# llama.cpp is built outside the repository by benches/llamacpp_native.sh; nothing of it is
# committed. The caller has `set -euo pipefail` and runs from the repository root.

# The llama-cpp-python 0.3.36 sdist's vendored llama.cpp sources (headers for the C programs).
src="${SMELT_HOME:-$HOME/.cache/smelt}/anchors/llama_cpp_python-0.3.36/vendor/llama.cpp"

# llamacpp_tools TARGET...: builds the llama.cpp tools once; sets $bin, their directory (which
# also holds llama.cpp's shared libraries).
llamacpp_tools() {
  bin=$(benches/llamacpp_native.sh "$@")
}

# smelt_and_scratch: builds smelt (release) and sets $smelt; sets $work, a temporary directory
# removed when the script exits.
smelt_and_scratch() {
  cargo build --release -q
  smelt=target/release/smelt
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
}

# llamacpp_cc NAME LIB...: compiles benches/NAME.c against llama.cpp's headers and the named
# libraries in $bin into $work/NAME.
llamacpp_cc() {
  local name=$1
  shift
  cc -O2 "benches/$name.c" -I"$src/include" -I"$src/ggml/include" -L"$bin" "${@/#/-l}" \
    -Wl,-rpath,"$bin" -o "$work/$name"
}

# smelt_requantized TYPE: SmolLM2 as shipped, requantized by smelt to TYPE; prints its path in
# $work.
smelt_requantized() {
  local out="$work/SmolLM2-135M.$1.gguf"
  # Called inside $(...), where `set -e` does not act: fail by hand.
  [ -e "$out" ] || $smelt -q --runs-dir "$work/runs" gguf quantize smollm2-135m "$out" "$1" \
    --allow-requantize > /dev/null || return 1
  echo "$out"
}

# The prompts of the greedy comparisons.
prompts=(
  "The capital of France is"
  "Once upon a time, in a small village by the sea,"
  "def fibonacci(n):"
)
