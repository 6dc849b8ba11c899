// Prints ggml's GeGLU (ggml_geglu_split with up = 1, the CPU backend's f16 GELU table) for
// the inputs x_k = -12 + 0.37k (k = 0..64) and -1.9990234 (where GCC's fused multiply-add in
// ggml_gelu_f32 changes the table's f16 entry), as "x_bits y_bits" lines; the golden values
// in crates/smelt-kernels/src/gelu.rs came from it. Build against a llama.cpp build
// (benches/llamacpp_native.sh):
//   gcc -O2 benches/ggml_gelu.c -I$SRC/ggml/include -L$BIN -lggml -lggml-base -lggml-cpu \
//       -Wl,-rpath,$BIN -o /tmp/ggml_gelu
#include <stdio.h>
#include <string.h>
#include "ggml.h"
#include "ggml-cpu.h"

int main(void) {
    enum { N = 66 };
    float xs[N];
    for (int k = 0; k < N - 1; k++) xs[k] = -12.0f + 0.37f * (float) k;
    xs[N - 1] = -1.9990234f;
    struct ggml_init_params p = { 16 * 1024 * 1024, NULL, false };
    struct ggml_context * ctx = ggml_init(p);
    struct ggml_tensor * x = ggml_new_tensor_1d(ctx, GGML_TYPE_F32, N);
    struct ggml_tensor * g = ggml_new_tensor_1d(ctx, GGML_TYPE_F32, N);
    memcpy(x->data, xs, sizeof xs);
    for (int i = 0; i < N; i++) ((float *) g->data)[i] = 1.0f;
    struct ggml_tensor * y = ggml_geglu_split(ctx, x, g);
    struct ggml_cgraph * gf = ggml_new_graph(ctx);
    ggml_build_forward_expand(gf, y);
    ggml_graph_compute_with_ctx(ctx, gf, 1);
    for (int i = 0; i < N; i++) {
        unsigned xb, yb;
        memcpy(&xb, &xs[i], 4);
        memcpy(&yb, &((float *) y->data)[i], 4);
        printf("0x%08x 0x%08x\n", xb, yb);
    }
    ggml_free(ctx);
    return 0;
}
