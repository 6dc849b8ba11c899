// Teacher-forced logits from llama.cpp, for benches/greedy_vs_llamacpp.sh.
//
// Loads MODEL with libllama, decodes PROMPT (with BOS/special tokens as llama-completion does),
// then for each forced token id: writes the full logit row (f32, vocab-sized) to OUT and feeds that
// token. So smelt's and llama.cpp's logits can be compared step by step along the same token path.
// Built against the llama.cpp that benches/llamacpp_native.sh builds; nothing of llama.cpp is copied.
//
// With a sixth argument `batch`, the prompt and the forced tokens go through in one batch with
// every position's logits kept (as llama-perplexity runs), and OUT gets the rows of the prompt's
// last token and of each forced token but the last: the same predictions, computed at once.
//
// Usage: llamacpp_logits MODEL PROMPT TOKENS(comma-separated) FLASH_ATTN(0|1) OUT.bin [batch]
#include "llama.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
  if (argc != 6 && !(argc == 7 && strcmp(argv[6], "batch") == 0)) {
    fprintf(stderr, "usage: %s MODEL PROMPT TOKENS FLASH_ATTN OUT.bin [batch]\n", argv[0]);
    return 2;
  }
  llama_backend_init();
  struct llama_model *model = llama_model_load_from_file(argv[1], llama_model_default_params());
  if (!model) { fprintf(stderr, "cannot load %s\n", argv[1]); return 1; }
  struct llama_context_params cp = llama_context_default_params();
  cp.n_ctx = 1024;
  cp.n_threads = 2;
  cp.n_threads_batch = 2;
  cp.flash_attn_type = atoi(argv[4]) ? LLAMA_FLASH_ATTN_TYPE_ENABLED : LLAMA_FLASH_ATTN_TYPE_DISABLED;
  struct llama_context *ctx = llama_init_from_model(model, cp);
  if (!ctx) { fprintf(stderr, "cannot create a context\n"); return 1; }
  const struct llama_vocab *vocab = llama_model_get_vocab(model);
  int n_vocab = llama_vocab_n_tokens(vocab);

  static llama_token prompt[1024];
  int n_prompt = llama_tokenize(vocab, argv[2], (int) strlen(argv[2]), prompt, 1024, true, true);
  if (n_prompt <= 0) { fprintf(stderr, "cannot tokenize the prompt\n"); return 1; }
  static llama_token forced[1024];
  int n_forced = 0;
  for (char *s = strtok(argv[3], ","); s && n_forced < 1024; s = strtok(NULL, ",")) forced[n_forced++] = atoi(s);

  FILE *out = fopen(argv[5], "wb");
  if (!out) { fprintf(stderr, "cannot write %s\n", argv[5]); return 1; }
  if (argc == 7) {
    int n = n_prompt + n_forced;
    if (n > 1024) { fprintf(stderr, "more than 1024 tokens\n"); return 1; }
    struct llama_batch all = llama_batch_init(n, 0, 1);
    for (int i = 0; i < n; i++) {
      all.token[i] = i < n_prompt ? prompt[i] : forced[i - n_prompt];
      all.pos[i] = i;
      all.n_seq_id[i] = 1;
      all.seq_id[i][0] = 0;
      all.logits[i] = 1;
    }
    all.n_tokens = n;
    if (llama_decode(ctx, all)) { fprintf(stderr, "decode failed\n"); return 1; }
    for (int i = n_prompt - 1; i < n - 1; i++) fwrite(llama_get_logits_ith(ctx, i), sizeof(float), (size_t) n_vocab, out);
    llama_batch_free(all);
    fclose(out);
    llama_free(ctx);
    llama_model_free(model);
    return 0;
  }
  struct llama_batch batch = llama_batch_get_one(prompt, n_prompt);
  for (int step = 0; step < n_forced; step++) {
    if (llama_decode(ctx, batch)) { fprintf(stderr, "decode failed at step %d\n", step); return 1; }
    fwrite(llama_get_logits_ith(ctx, -1), sizeof(float), (size_t) n_vocab, out);
    batch = llama_batch_get_one(&forced[step], 1);
  }
  fclose(out);
  llama_free(ctx);
  llama_model_free(model);
  return 0;
}
