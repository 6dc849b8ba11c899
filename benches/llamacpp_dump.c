// llama.cpp's intermediate tensors along a token path, for benches/numerics_vs_llamacpp.sh.
//
// Loads MODEL with libllama (flash attention off), decodes PROMPT as one batch and then each
// forced token alone, and writes every f32 tensor the graph names attn_norm-L, Qcur-L, Kcur-L,
// Vcur-L, kqv_out-L, attn_out-L, ffn_norm-L, ffn_gate-L, ffn_up-L, ffn_swiglu-L, ffn_out-L or
// result_output, through the public eval callback. Records: a 64-byte name, four i64 dims,
// then the f32 values; a record named "STEP k" (dims 0) opens each decode call. The prompt's
// token ids go to stdout, comma-separated. Built against
// the llama.cpp that benches/llamacpp_native.sh builds; nothing of llama.cpp is copied.
//
// Usage: llamacpp_dump MODEL PROMPT TOKENS(comma-separated) OUT.bin
#include "llama.h"
#include "ggml.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static FILE *out;
static const char *wanted[] = {"attn_norm-", "Qcur-", "Kcur-", "Vcur-", "kqv_out-", "attn_out-",
                               "ffn_norm-", "ffn_gate-", "ffn_up-", "ffn_swiglu-", "ffn_out-",
                               "ffn_moe_logits-", "ffn_moe_probs-", "ffn_moe_out-",
                               "ffn_shexp-",
                               "result_output", NULL};

static void record(const char *name, const int64_t ne[4], const float *data, size_t n) {
  char padded[64] = {0};
  strncpy(padded, name, 63);
  fwrite(padded, 1, 64, out);
  fwrite(ne, 8, 4, out);
  if (n) fwrite(data, 4, n, out);
}

static bool observe(struct ggml_tensor *t, bool ask, void *user) {
  (void) user;
  int hit = 0;
  for (int i = 0; wanted[i]; i++) hit |= strncmp(t->name, wanted[i], strlen(wanted[i])) == 0;
  if (ask) return hit;
  if (!hit || t->type != GGML_TYPE_F32) return true;
  int64_t ne[4] = {t->ne[0], t->ne[1], t->ne[2], t->ne[3]};
  size_t n = (size_t) ggml_nelements(t), k = 0;
  float *buf = malloc(n * sizeof(float));
  if (!buf) return false;
  // Element by element through the strides: some of these tensors are views.
  for (int64_t i3 = 0; i3 < ne[3]; i3++)
    for (int64_t i2 = 0; i2 < ne[2]; i2++)
      for (int64_t i1 = 0; i1 < ne[1]; i1++)
        for (int64_t i0 = 0; i0 < ne[0]; i0++)
          buf[k++] = *(const float *) ((const char *) t->data + i0 * t->nb[0] + i1 * t->nb[1] +
                                       i2 * t->nb[2] + i3 * t->nb[3]);
  record(t->name, ne, buf, n);
  free(buf);
  return true;
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: %s MODEL PROMPT TOKENS OUT.bin\n", argv[0]);
    return 2;
  }
  out = fopen(argv[4], "wb");
  if (!out) { fprintf(stderr, "cannot write %s\n", argv[4]); return 1; }
  llama_backend_init();
  struct llama_model *model = llama_model_load_from_file(argv[1], llama_model_default_params());
  if (!model) { fprintf(stderr, "cannot load %s\n", argv[1]); return 1; }
  struct llama_context_params cp = llama_context_default_params();
  cp.n_ctx = 1024;
  cp.n_threads = 2;
  cp.n_threads_batch = 2;
  cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
  cp.cb_eval = observe;
  cp.cb_eval_user_data = NULL;
  struct llama_context *ctx = llama_init_from_model(model, cp);
  if (!ctx) { fprintf(stderr, "cannot create a context\n"); return 1; }
  const struct llama_vocab *vocab = llama_model_get_vocab(model);
  static llama_token prompt[1024], forced[1024];
  int n_prompt = llama_tokenize(vocab, argv[2], (int) strlen(argv[2]), prompt, 1024, true, true);
  if (n_prompt <= 0) { fprintf(stderr, "cannot tokenize the prompt\n"); return 1; }
  // The prompt's ids on stdout, so the other runtime can run the same tokens.
  for (int i = 0; i < n_prompt; i++) printf("%s%d", i ? "," : "", prompt[i]);
  printf("\n");
  int n_forced = 0;
  for (char *s = strtok(argv[3], ","); s && n_forced < 1024; s = strtok(NULL, ",")) forced[n_forced++] = atoi(s);
  struct llama_batch batch = llama_batch_get_one(prompt, n_prompt);
  for (int step = 0; step <= n_forced; step++) {
    char mark[64];
    snprintf(mark, sizeof mark, "STEP %d", step);
    int64_t zero[4] = {0, 0, 0, 0};
    record(mark, zero, NULL, 0);
    if (llama_decode(ctx, batch)) { fprintf(stderr, "decode failed at step %d\n", step); return 1; }
    if (step < n_forced) batch = llama_batch_get_one(&forced[step], 1);
  }
  fclose(out);
  llama_free(ctx);
  llama_model_free(model);
  return 0;
}
