// ggml's own quantized matrix products over a sweep of shapes, for benches/ggml_matmul_golden.sh.
//
// For each weight type and row count it quantizes random weights with ggml_quantize_chunk, places
// them the way llama.cpp's model loader does (in the CPU "repack" buffer when the CPU device says
// it can run the product from there, as llama.cpp asks it, else in a plain CPU buffer), and runs
// ggml_mul_mat on the CPU backend for batches of 1 to 17 tokens of the same random f32
// activations. Every product goes through whatever path ggml picks for that shape and batch
// (vec_dot, the repacked gemv/gemm, the tiled k-quant matmul, llamafile's sgemm).
// Built against the llama.cpp that benches/llamacpp_native.sh builds; nothing of it is copied.
//
// Output, little-endian:
//   "SMGM", u32 version (2), u32 max_cols, u32 max_tokens, f32 x[max_tokens][max_cols],
//   u32 n_matrices, then per matrix:
//     u32 ggml_type, u32 rows, u32 cols, u32 repacked (0/1), u32 n_bytes, u8 weights[n_bytes],
//     u32 n_runs, then per run: u32 n_tokens, f32 y[n_tokens][rows]
//     (y = x[..n_tokens][..cols] · Wᵀ).
// The 32-block formats have 544 columns (17 blocks: an odd count, which vec_dot kernels that
// pair blocks treat apart) with 13 rows and 576 (SmolLM2's width) otherwise; the 256-block
// ones 512; F32 (copied by ggml_quantize_chunk) 528, 540 and 528.
//
// Usage: ggml_matmul THREADS OUT.bin [TYPE...]   (ggml type names; default: the twelve block
// formats below, without f32)
#include "ggml.h"
#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_COLS 576
#define MAX_TOKENS 17

static uint64_t rng_state = 0x5eed;

static uint64_t next_u64(void) {
  uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Uniform in [-1, 1).
static float uniform(void) { return (float) (next_u64() >> 40) / (float) (1u << 23) - 1.0f; }

// Roughly normal with an occasional outlier x8, as real activations have.
static float activation(void) {
  float v = uniform() + uniform() + uniform() + uniform();
  return next_u64() % 64 == 0 ? v * 8.0f : v;
}

static void put_u32(FILE *f, uint32_t v) { fwrite(&v, 4, 1, f); }

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
  if (argc < 3) {
    fprintf(stderr, "usage: %s THREADS OUT.bin [TYPE...]\n", argv[0]);
    return 2;
  }
  int threads = atoi(argv[1]);
  FILE *out = fopen(argv[2], "wb");
  if (!out) { fprintf(stderr, "cannot write %s\n", argv[2]); return 1; }
  ggml_backend_t backend = ggml_backend_cpu_init();
  ggml_backend_cpu_set_n_threads(backend, threads);
  ggml_backend_dev_t dev = ggml_backend_get_device(backend);
  ggml_backend_buffer_type_t repack = repack_buft(dev);

  static float x[MAX_TOKENS * MAX_COLS];  // (MAX_TOKENS, MAX_COLS)
  for (int i = 0; i < MAX_TOKENS * MAX_COLS; i++) x[i] = activation();
  fwrite("SMGM", 1, 4, out);
  put_u32(out, 2);
  put_u32(out, MAX_COLS);
  put_u32(out, MAX_TOKENS);
  fwrite(x, 4, MAX_TOKENS * MAX_COLS, out);
  static float xc[MAX_TOKENS * MAX_COLS];  // (MAX_TOKENS, cols): x's first cols of each row

  enum ggml_type types[GGML_TYPE_COUNT] = {GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_Q5_0,
                                           GGML_TYPE_Q5_1, GGML_TYPE_Q8_0, GGML_TYPE_Q4_K,
                                           GGML_TYPE_Q5_K, GGML_TYPE_Q6_K, GGML_TYPE_Q2_K,
                                           GGML_TYPE_Q3_K, GGML_TYPE_IQ4_XS, GGML_TYPE_IQ4_NL};
  int n_types = 12;
  if (argc > 3) {
    n_types = 0;
    for (int a = 3; a < argc && n_types < GGML_TYPE_COUNT; a++) {
      int found = -1;
      for (int t = 0; t < GGML_TYPE_COUNT; t++)
        if (ggml_type_name((enum ggml_type) t) && strcmp(ggml_type_name((enum ggml_type) t), argv[a]) == 0) found = t;
      if (found < 0) { fprintf(stderr, "unknown ggml type %s\n", argv[a]); return 2; }
      types[n_types++] = (enum ggml_type) found;
    }
  }
  // As written; repacked by ggml; and interleaved by smelt too (three 16-row groups).
  const int row_counts[] = {13, 24, 48};
  const int token_counts[] = {1, 2, 3, 4, 5, 7, 8, 9, 12, 16, 17};
  const int n_rows = sizeof row_counts / sizeof *row_counts;
  const int n_runs = sizeof token_counts / sizeof *token_counts;
  put_u32(out, n_types * n_rows);
  for (int ti = 0; ti < n_types; ti++) {
    for (int ri = 0; ri < n_rows; ri++) {
      enum ggml_type type = types[ti];
      int rows = row_counts[ri];
      // F32: 528 columns with 13 rows, 540 with 24 and 528 with 48. llamafile's sgemm takes
      // rows that are whole 4s of columns that are whole 16s (48 x 528 only); otherwise
      // ggml_vec_dot_f32, whose leftovers past the last 64 (16 and 28 here) it vectorizes by
      // 16 and 8 and ends with a scalar tail.
      int cols = type == GGML_TYPE_F32 ? (rows == 24 ? 540 : 528)
               : ggml_blck_size(type) != 32 ? 512 : rows % 2 ? 544 : 576;
      for (int t = 0; t < MAX_TOKENS; t++)
        memcpy(xc + t * cols, x + t * MAX_COLS, sizeof(float) * cols);
      float *wf = malloc(sizeof(float) * rows * cols);  // (rows, cols)
      for (int i = 0; i < rows * cols; i++) wf[i] = uniform();
      size_t row_bytes = ggml_row_size(type, cols), n_bytes = row_bytes * rows;
      void *wq = malloc(n_bytes);
      ggml_quantize_chunk(type, wf, wq, 0, rows, cols, NULL);
      int repacked = repack_supported(dev, repack, type, rows, cols);
      put_u32(out, type);
      put_u32(out, rows);
      put_u32(out, cols);
      put_u32(out, repacked);
      put_u32(out, n_bytes);
      fwrite(wq, 1, n_bytes, out);
      put_u32(out, n_runs);

      struct ggml_init_params wp = {ggml_tensor_overhead() * 2, NULL, true};
      struct ggml_context *wctx = ggml_init(wp);
      struct ggml_tensor *w = ggml_new_tensor_2d(wctx, type, cols, rows);
      ggml_backend_buffer_t wbuf = ggml_backend_alloc_ctx_tensors_from_buft(
          wctx, repacked ? repack : ggml_backend_cpu_buffer_type());
      ggml_backend_tensor_set(w, wq, 0, n_bytes);
      for (int k = 0; k < n_runs; k++) {
        int n = token_counts[k];
        struct ggml_init_params gp = {ggml_tensor_overhead() * 8 + ggml_graph_overhead(), NULL, true};
        struct ggml_context *gctx = ggml_init(gp);
        struct ggml_tensor *xt = ggml_new_tensor_2d(gctx, GGML_TYPE_F32, cols, n);
        struct ggml_tensor *y = ggml_mul_mat(gctx, w, xt);
        struct ggml_cgraph *gf = ggml_new_graph(gctx);
        ggml_build_forward_expand(gf, y);
        ggml_gallocr_t galloc = ggml_gallocr_new(ggml_backend_cpu_buffer_type());
        if (!ggml_gallocr_alloc_graph(galloc, gf)) { fprintf(stderr, "graph allocation failed\n"); return 1; }
        ggml_backend_tensor_set(xt, xc, 0, sizeof(float) * n * cols);
        if (ggml_backend_graph_compute(backend, gf) != GGML_STATUS_SUCCESS) {
          fprintf(stderr, "compute failed\n");
          return 1;
        }
        float *yv = malloc(sizeof(float) * n * rows);  // (n, rows)
        ggml_backend_tensor_get(y, yv, 0, sizeof(float) * n * rows);
        put_u32(out, n);
        fwrite(yv, 4, (size_t) n * rows, out);
        free(yv);
        ggml_gallocr_free(galloc);
        ggml_free(gctx);
      }
      fprintf(stderr, "%s rows %d: %s\n", ggml_type_name(type), rows,
              repacked ? "repacked" : "plain buffer");
      ggml_backend_buffer_free(wbuf);
      ggml_free(wctx);
      free(wf);
      free(wq);
    }
  }
  ggml_backend_free(backend);
  if (fclose(out) != 0) { fprintf(stderr, "write failed\n"); return 1; }
  return 0;
}
