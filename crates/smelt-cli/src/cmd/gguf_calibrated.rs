//! `smelt gguf quantize --method gptq`: llama.cpp's mixes (Q4_K_M, Q4_0, ...) with the layer
//! matrices' block contents chosen with calibration data (GPTQ error feedback inside the block
//! format) instead of rounding each block alone. Same types, same size, same file layout, so
//! llama.cpp runs the result.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use smelt_compress::llm::ggml_gptq::{GgmlGptqConfig, gptq_ggml_llama};
use smelt_gguf::mix::FileType;
use smelt_gguf::{GgmlType, GgufFile};
use smelt_models::llama::Linear;

use crate::Context;

/// How `smelt gguf quantize` chooses the layer matrices' codes.
#[derive(clap::Args, Debug, Clone)]
pub struct CalibratedArgs {
    /// rtn: round each block alone (llama-quantize's way); gptq: calibrated error feedback.
    #[arg(long, default_value = "rtn")]
    pub method: String,
    /// gptq: calibration windows × tokens, drawn from the non-tragedy plays (Shakespeare).
    #[arg(long, default_value = "128x512")]
    pub calib: String,
    /// gptq: seed for the calibration windows.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// gptq: dampening, a fraction of the Hessian's mean diagonal.
    #[arg(long, default_value_t = 0.01)]
    pub damp: f64,
    /// gptq: visit columns by decreasing Hessian diagonal (block grids fitted up front).
    #[arg(long)]
    pub act_order: bool,
    /// gptq: fit each block's scale by a search weighted by the Hessian diagonal.
    #[arg(long)]
    pub mse: bool,
}

/// For `--method gptq`, the calibrated bytes of every layer matrix by tensor name; empty for
/// `rtn`. The model is loaded from `path` and dequantized to F32 first.
pub fn layers(
    ctx: &Context,
    path: &Path,
    src: &GgufFile,
    ft: FileType,
    threads: usize,
    a: &CalibratedArgs,
    allow_requantize: bool,
) -> Result<HashMap<String, Vec<u8>>> {
    match a.method.as_str() {
        "rtn" => return Ok(HashMap::new()),
        "gptq" => {}
        m => bail!("unknown --method {m:?} (known: rtn, gptq)"),
    }
    if !(a.damp.is_finite() && a.damp > 0.0) {
        bail!(
            "--damp {}: must be a positive fraction such as 0.01",
            a.damp
        );
    }
    let (n, len) = super::llm::parse_calib(&a.calib)?;
    // Calibrated codes are written per q/k/v/gate/up matrix; Phi-3 stores them stacked.
    if src
        .header
        .get("general.architecture")
        .and_then(|v| v.as_str())
        == Some("phi3")
    {
        bail!(
            "--method {}: phi3 models are not supported yet (their q/k/v and gate/up matrices \
             are stored stacked); plain rounding (--method rtn) quantizes them",
            a.method
        );
    }
    let plan = smelt_gguf::mix::plan(&src.header, ft);
    // Before the long run: the layer matrices' codes are chosen anew, so a quantized source
    // needs --allow-requantize as plain rounding does.
    if !allow_requantize {
        let calibrated = |name: &str| {
            name.starts_with("blk.")
                && Linear::ALL
                    .iter()
                    .any(|w| name.ends_with(&format!(".{}", w.gguf_name())))
        };
        smelt_gguf::quantize::requantize_check(&src.header, &plan, calibrated)?;
    }
    let types: HashMap<&str, GgmlType> = src
        .header
        .tensors
        .iter()
        .zip(&plan)
        .map(|(t, p)| (t.name.as_str(), p.unwrap_or(t.ggml_type)))
        .collect();
    let mut loaded = super::run::load(ctx, &path.display().to_string(), Some(threads))?;
    loaded.model.dequantize_to_f32()?;
    let n_layer = loaded.model.config.n_layer;
    // Every layer matrix's target type, checked before the long run.
    let mut target = HashMap::new();
    for l in 0..n_layer {
        for which in Linear::ALL {
            let name = format!("blk.{l}.{}", which.gguf_name());
            let ty = *types
                .get(name.as_str())
                .with_context(|| format!("{name} is not in {}", path.display()))?;
            if smelt_gguf::blocks::regrid::REGRID_TYPES
                .iter()
                .all(|&t| t != ty)
            {
                bail!(
                    "--method gptq: {name} would be {}, which has no calibrated quantizer (mixes built from Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K do)",
                    ty.name()
                );
            }
            target.insert((l, which), ty);
        }
    }
    let (calib, calib_count, _) = super::llm::calibration(ctx, &loaded, n, len, a.seed)?;
    eprintln!(
        "calibration: {n} windows x {len} tokens (seed {}) from {calib_count} tokens of non-tragedy plays",
        a.seed
    );
    let cfg = GgmlGptqConfig {
        damp: a.damp,
        act_order: a.act_order,
        mse: a.mse,
        ..GgmlGptqConfig::default()
    };
    let bar = crate::progress::bar(n_layer as u64, "layers", ctx.quiet);
    bar.set_message(format!("GPTQ {}", ft.name()));
    let t = Instant::now();
    let out = gptq_ggml_llama(
        &mut loaded.model,
        &|l, w| target[&(l, w)],
        &calib,
        &cfg,
        |_| bar.inc(1),
    )?;
    bar.finish_and_clear();
    eprintln!(
        "GPTQ chose the codes of {} layer matrices in {:.0} s",
        out.len(),
        t.elapsed().as_secs_f64()
    );
    Ok(out)
}
