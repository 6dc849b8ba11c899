// Speed of ggml's matrix products for one token (the decode hot path) or a few, for
// benches/gemv_vs_ggml.sh.
//
// For each weight type it quantizes random weights (ROWS, COLS) with ggml_quantize_chunk, places
// them as llama.cpp's model loader does (the CPU "repack" buffer when the CPU device runs the
// product from there, else a plain CPU buffer) and times ggml_mul_mat of TOKENS tokens on the
// CPU backend: the best of ROUNDS batches of REPS graph computes (each compute also quantizes
// the activations, as a model's does). One JSON line per type, time per row and token:
//   {"type": "q4_K", "repacked": 1, "ns_per_row": 58.1}
// Built against the llama.cpp that benches/llamacpp_native.sh builds; nothing of it is copied.
//
// Usage: ggml_gemv_speed THREADS ROWS COLS TOKENS REPS ROUNDS TYPE...   (ggml type names)
#include "ggml.h"
#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t rng_state = 0x5eed;

static uint64_t next_u64(void) {
  uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Uniform in [-1, 1).
static float uniform(void) { return (float) (next_u64() >> 40) / (float) (1u << 23) - 1.0f; }

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static ggml_backend_buffer_type_t repack_buft(ggml_backend_dev_t dev) {
  ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(dev);
  ggml_backend_dev_get_extra_bufts_t get =
      (ggml_backend_dev_get_extra_bufts_t) ggml_backend_reg_get_proc_address(
          reg, "ggml_backend_dev_get_extra_bufts");
  if (!get) return NULL;
  for (ggml_backend_buffer_type_t *b = get(dev); b && *b; b++)
    if (strcmp(ggml_backend_buft_name(*b), "CPU_REPACK") == 0) return *b;
  return NULL;
}

// Whether the CPU device runs W · x from the repack buffer: llama.cpp's own question
// (weight_buft_supported) with a zero-size buffer standing in for the weights.
static int repack_supported(ggml_backend_dev_t dev, ggml_backend_buffer_type_t buft,
                            enum ggml_type type, int rows, int cols) {
  if (!buft) return 0;
  struct ggml_init_params p = {ggml_tensor_overhead() * 8, NULL, true};
  struct ggml_context *ctx = ggml_init(p);
  struct ggml_tensor *w = ggml_new_tensor_2d(ctx, type, cols, rows);
  struct ggml_tensor *x = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, cols, 512);
  struct ggml_tensor *y = ggml_mul_mat(ctx, w, x);
  ggml_backend_buffer_t dummy = ggml_backend_buft_alloc_buffer(buft, 0);
  w->buffer = dummy;
  int ok = ggml_backend_dev_supports_op(dev, y);
  w->buffer = NULL;
  ggml_backend_buffer_free(dummy);
  ggml_free(ctx);
  return ok;
}

int main(int argc, char **argv) {
  if (argc < 8) {
    fprintf(stderr, "usage: %s THREADS ROWS COLS TOKENS REPS ROUNDS TYPE...\n", argv[0]);
    return 2;
  }
  int threads = atoi(argv[1]), rows = atoi(argv[2]), cols = atoi(argv[3]);
  int tokens = atoi(argv[4]), reps = atoi(argv[5]), rounds = atoi(argv[6]);
  if (threads < 1 || rows < 1 || cols < 1 || tokens < 1 || reps < 1 || rounds < 1) {
    fprintf(stderr, "THREADS, ROWS, COLS, TOKENS, REPS and ROUNDS must be positive\n");
    return 2;
  }
  ggml_backend_t backend = ggml_backend_cpu_init();
  ggml_backend_cpu_set_n_threads(backend, threads);
  ggml_backend_dev_t dev = ggml_backend_get_device(backend);
  ggml_backend_buffer_type_t repack = repack_buft(dev);
  float *x = malloc(sizeof(float) * tokens * cols);  // (tokens, cols)
  for (int i = 0; i < tokens * cols; i++) x[i] = uniform() + uniform() + uniform() + uniform();
  float *wf = malloc(sizeof(float) * rows * cols);  // (rows, cols)
  for (size_t i = 0; i < (size_t) rows * cols; i++) wf[i] = uniform();
  for (int a = 7; a < argc; a++) {
    int type = -1;
    for (int t = 0; t < GGML_TYPE_COUNT; t++)
      if (ggml_type_name((enum ggml_type) t) && strcmp(ggml_type_name((enum ggml_type) t), argv[a]) == 0) type = t;
    if (type < 0) { fprintf(stderr, "unknown ggml type %s\n", argv[a]); return 2; }
    if (cols % ggml_blck_size(type)) { fprintf(stderr, "%s: COLS not whole blocks\n", argv[a]); return 2; }
    size_t n_bytes = ggml_row_size(type, cols) * rows;
    void *wq = malloc(n_bytes);
    ggml_quantize_chunk(type, wf, wq, 0, rows, cols, NULL);
    int repacked = repack_supported(dev, repack, type, rows, cols);
    struct ggml_init_params wp = {ggml_tensor_overhead() * 2, NULL, true};
    struct ggml_context *wctx = ggml_init(wp);
    struct ggml_tensor *w = ggml_new_tensor_2d(wctx, type, cols, rows);
    ggml_backend_buffer_t wbuf = ggml_backend_alloc_ctx_tensors_from_buft(
        wctx, repacked ? repack : ggml_backend_cpu_buffer_type());
    ggml_backend_tensor_set(w, wq, 0, n_bytes);
    struct ggml_init_params gp = {ggml_tensor_overhead() * 8 + ggml_graph_overhead(), NULL, true};
    struct ggml_context *gctx = ggml_init(gp);
    struct ggml_tensor *xt = ggml_new_tensor_2d(gctx, GGML_TYPE_F32, cols, tokens);
    struct ggml_tensor *y = ggml_mul_mat(gctx, w, xt);
    struct ggml_cgraph *gf = ggml_new_graph(gctx);
    ggml_build_forward_expand(gf, y);
    ggml_gallocr_t galloc = ggml_gallocr_new(ggml_backend_cpu_buffer_type());
    if (!ggml_gallocr_alloc_graph(galloc, gf)) { fprintf(stderr, "graph allocation failed\n"); return 1; }
    ggml_backend_tensor_set(xt, x, 0, sizeof(float) * tokens * cols);
    double best = 1e30;
    for (int r = 0; r < rounds; r++) {
      double t0 = now_s();
      for (int k = 0; k < reps; k++)
        if (ggml_backend_graph_compute(backend, gf) != GGML_STATUS_SUCCESS) {
          fprintf(stderr, "compute failed\n");
          return 1;
        }
      double t = (now_s() - t0) / reps;
      if (t < best) best = t;
    }
    printf("{\"type\": \"%s\", \"repacked\": %d, \"ns_per_row\": %.3f}\n", argv[a], repacked,
           best * 1e9 / rows / tokens);
    fflush(stdout);
    ggml_gallocr_free(galloc);
    ggml_free(gctx);
    ggml_backend_buffer_free(wbuf);
    ggml_free(wctx);
    free(wq);
  }
  ggml_backend_free(backend);
  free(x);
  free(wf);
  return 0;
}
