// Golden-vector harness: runs ggml's reference quantizers (quantize_row_*_ref) on a seeded
// input and writes the bytes. Build against llama.cpp's ggml sources (see README in the repo).
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "ggml.h"
#include "ggml-quants.h"

static uint64_t s;
static uint64_t next(void) {  // SplitMix64, same as the Rust test
    s += 0x9E3779B97F4A7C15ull;
    uint64_t z = s;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

int main(int argc, char ** argv) {
    if (argc != 5) { fprintf(stderr, "usage: golden TYPE N SEED OUT\n"); return 2; }
    const char * ty = argv[1];
    int64_t n = atoll(argv[2]);
    s = strtoull(argv[3], 0, 10);
    float * x = malloc(n * sizeof(float));
    // Values: uniform in [-1, 1) times a per-256-block scale 10^(b%5-2), plus an all-zero block.
    for (int64_t i = 0; i < n; i++) {
        double u = (double)(next() >> 11) / (double)(1ull << 53) * 2.0 - 1.0;
        int b = (int)(i / 256);
        double scale = 1.0; for (int k = 0; k < (b % 5); k++) scale *= 10.0; scale /= 100.0;
        x[i] = (b == 3) ? 0.0f : (float)(u * scale);
    }
    size_t bytes = 0; void * out = malloc(n * 4 + 1024);
    if (!strcmp(ty, "input")) { memcpy(out, x, n * 4); bytes = n * 4; }
    else if (!strcmp(ty, "q2_K")) { quantize_row_q2_K_ref(x, out, n); bytes = n / 256 * sizeof(block_q2_K); }
    else if (!strcmp(ty, "q3_K")) { quantize_row_q3_K_ref(x, out, n); bytes = n / 256 * sizeof(block_q3_K); }
    else if (!strcmp(ty, "q4_K")) { quantize_row_q4_K_ref(x, out, n); bytes = n / 256 * sizeof(block_q4_K); }
    else if (!strcmp(ty, "q5_K")) { quantize_row_q5_K_ref(x, out, n); bytes = n / 256 * sizeof(block_q5_K); }
    else if (!strcmp(ty, "q6_K")) { quantize_row_q6_K_ref(x, out, n); bytes = n / 256 * sizeof(block_q6_K); }
    else if (!strcmp(ty, "q8_K")) { quantize_row_q8_K_ref(x, out, n); bytes = n / 256 * sizeof(block_q8_K); }
    else if (!strcmp(ty, "iq4_xs")) { quantize_row_iq4_xs_ref(x, out, n); bytes = n / 256 * sizeof(block_iq4_xs); }
    else if (!strcmp(ty, "iq4_nl")) { quantize_row_iq4_nl_ref(x, out, n); bytes = n / 32 * sizeof(block_iq4_nl); }
    else { fprintf(stderr, "unknown type %s\n", ty); return 2; }
    FILE * f = fopen(argv[4], "wb"); fwrite(out, 1, bytes, f); fclose(f);
    return 0;
}

// The _ref quantizers never reach these; ggml-quants.c references them from other paths.
void ggml_abort(const char * file, int line, const char * fmt, ...) { fprintf(stderr, "abort %s:%d %s\n", file, line, fmt); abort(); }
size_t ggml_row_size(enum ggml_type type, int64_t ne) { (void)type; (void)ne; abort(); }
const char * ggml_type_name(enum ggml_type type) { (void)type; return "?"; }
size_t ggml_type_size(enum ggml_type type) { (void)type; abort(); }
