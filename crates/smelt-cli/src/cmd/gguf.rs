//! `smelt gguf ...`: look inside GGUF model files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use smelt_files::human_bytes;
use smelt_gguf::{GgmlType, GgufFile, MetaValue};

use crate::Context;

/// GGUF sub-verbs.
#[derive(clap::Subcommand)]
pub enum GgufCommand {
    /// Print a GGUF file's header, metadata and a per-type tensor summary.
    ///
    /// Example: smelt gguf inspect model.gguf --tensors
    Inspect {
        /// A .gguf path, or the name of a model asset (e.g. smollm2-135m).
        model: String,
        /// Also list every tensor.
        #[arg(long)]
        tensors: bool,
        /// Print long arrays in full instead of their length.
        #[arg(long)]
        full: bool,
        /// Machine-readable output (metadata, tensor table, totals) as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Quantize a GGUF model with one of llama.cpp's mixes (Q4_K_M, Q8_0, F16, ...).
    ///
    /// Example: smelt gguf quantize model-f16.gguf model-q4_k_m.gguf Q4_K_M
    Quantize {
        /// Source .gguf path, or a model asset name.
        input: String,
        /// Output .gguf path (written atomically).
        output: PathBuf,
        /// Mix: F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K_M Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K IQ4_NL IQ4_XS.
        ftype: String,
        /// Convert tensors that are already quantized (loses quality), like llama-quantize.
        #[arg(long)]
        allow_requantize: bool,
        /// Worker threads [default: all cores].
        #[arg(long)]
        threads: Option<usize>,
        #[command(flatten)]
        calibrated: super::gguf_calibrated::CalibratedArgs,
    },
    /// Dequantize a GGUF llama model into a Hugging Face directory (safetensors + config.json +
    /// tokenizer files; GGUF-only metadata in gguf_metadata.json).
    ///
    /// Example: smelt gguf export-hf smollm2-135m ./smollm2-hf --dtype f32
    ExportHf {
        /// Source .gguf path, or a model asset name.
        input: String,
        /// Output directory.
        dir: PathBuf,
        /// Tensor dtype: f32 (exact), f16 or bf16.
        #[arg(long, default_value = "f32")]
        dtype: String,
    },
    /// Convert a Hugging Face llama checkpoint directory to GGUF.
    ///
    /// Example: smelt gguf convert ./smollm2-hf smollm2-f16.gguf --outtype f16
    Convert {
        /// Directory with config.json, *.safetensors, tokenizer.json.
        dir: PathBuf,
        /// Output .gguf path (written atomically).
        output: PathBuf,
        /// Type of the 2-D weights: f16, bf16 or f32 (norms stay f32).
        #[arg(long, default_value = "f16")]
        outtype: String,
    },
    /// Check a GGUF file: header, every count, length and offset, and that every tensor of a
    /// type smelt can decode holds only finite values. Exits non-zero on the first problem.
    ///
    /// Example: smelt gguf validate model.gguf
    Validate {
        /// A .gguf path, or the name of a model asset.
        model: String,
    },
}

/// Runs a `smelt gguf` verb.
pub fn run(ctx: &Context, cmd: GgufCommand) -> Result<()> {
    match cmd {
        GgufCommand::Inspect {
            model,
            tensors,
            full,
            json,
        } => {
            let path = resolve_model(ctx, &model)?;
            let file = GgufFile::open(&path)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&to_json(&file, full))?);
                return Ok(());
            }
            print!("{}", describe(&file, full));
            if tensors {
                print!("{}", tensor_table(&file));
            }
            Ok(())
        }
        GgufCommand::Validate { model } => validate(ctx, &model),
        GgufCommand::ExportHf { input, dir, dtype } => {
            use smelt_gguf::hf::ExportDtype;
            let dtype = match dtype.to_ascii_lowercase().as_str() {
                "f32" => ExportDtype::F32,
                "f16" => ExportDtype::F16,
                "bf16" => ExportDtype::BF16,
                other => bail!("unknown --dtype {other:?}; use f32, f16 or bf16"),
            };
            let path = resolve_model(ctx, &input)?;
            let file = GgufFile::open(&path)?;
            smelt_gguf::hf::export(&file, &dir, dtype)?;
            println!(
                "{} -> {} (model.safetensors, config.json, tokenizer.json, tokenizer_config.json, gguf_metadata.json)",
                path.display(),
                dir.display()
            );
            Ok(())
        }
        GgufCommand::Convert {
            dir,
            output,
            outtype,
        } => {
            use smelt_gguf::hf::OutType;
            let out = match outtype.to_ascii_lowercase().as_str() {
                "f32" => OutType::F32,
                "f16" => OutType::F16,
                "bf16" => OutType::BF16,
                other => bail!("unknown --outtype {other:?}; use f16, bf16 or f32"),
            };
            let writer = smelt_gguf::hf::convert(&dir, out)?;
            writer.write(&output)?;
            let f = GgufFile::open(&output)?;
            println!(
                "{} -> {}: {} tensors, {:.1} M parameters, {}",
                dir.display(),
                output.display(),
                f.header.tensors.len(),
                f.parameter_count() as f64 / 1e6,
                human_bytes(f.header.file_len)
            );
            Ok(())
        }
        GgufCommand::Quantize {
            input,
            output,
            ftype,
            allow_requantize,
            threads,
            calibrated,
        } => quantize(
            ctx,
            &input,
            &output,
            &ftype,
            allow_requantize,
            threads,
            &calibrated,
        ),
    }
}

/// `smelt gguf quantize`.
fn quantize(
    ctx: &Context,
    input: &str,
    output: &Path,
    ftype: &str,
    allow_requantize: bool,
    threads: Option<usize>,
    calibrated: &super::gguf_calibrated::CalibratedArgs,
) -> Result<()> {
    use smelt_gguf::mix::{ALL_FILE_TYPES, FileType};
    let Some(ft) = FileType::parse(ftype) else {
        let names: Vec<String> = ALL_FILE_TYPES.iter().map(|t| t.name()).collect();
        bail!("unknown mix {ftype:?}; choose one of {}", names.join(", "));
    };
    let path = resolve_model(ctx, input)?;
    let src = GgufFile::open(&path)?;
    let threads = threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let mut record = ctx.record("gguf quantize");
    record
        .input("model", path.display().to_string())
        .setting("ftype", ft.name())
        .setting("threads", threads)
        .setting("allow_requantize", allow_requantize)
        .setting("method", &calibrated.method);
    let t0 = std::time::Instant::now();
    // Layer matrices chosen with calibration data (empty for plain rounding).
    let provided = super::gguf_calibrated::layers(
        ctx,
        &path,
        &src,
        ft,
        threads,
        calibrated,
        allow_requantize,
    )?;
    let bar = if ctx.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(src.header.tensors.iter().map(|t| t.size).sum())
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "quantizing [{bar:30}] {bytes}/{total_bytes} {elapsed}",
        )
        .expect("valid template"),
    );
    let opts = smelt_gguf::quantize::QuantizeOptions {
        ftype: ft,
        allow_requantize,
        threads,
    };
    let (writer, reports) =
        smelt_gguf::quantize::quantize_model_with(&src, opts, &provided, |done, _| {
            bar.set_position(done)
        })?;
    let t_quant = t0.elapsed();
    writer.write(output)?;
    bar.finish_and_clear();
    let (bytes_in, bytes_out): (u64, u64) = reports
        .iter()
        .fold((0, 0), |(a, b), r| (a + r.bytes_in, b + r.bytes_out));
    let mut by_type: BTreeMap<GgmlType, (usize, u64)> = BTreeMap::new();
    for r in &reports {
        let e = by_type.entry(r.to).or_default();
        e.0 += 1;
        e.1 += r.bytes_out;
    }
    let params = src.parameter_count();
    println!(
        "{} -> {} ({}): {} tensors, {} -> {} ({:.2} bits/weight), quantized in {:.2} s on {threads} threads",
        path.display(),
        output.display(),
        ft.name(),
        reports.len(),
        human_bytes(bytes_in),
        human_bytes(bytes_out),
        bytes_out as f64 * 8.0 / params.max(1) as f64,
        t_quant.as_secs_f64()
    );
    for (ty, (n, b)) in &by_type {
        println!("  {:<8} {n:>4} tensors {:>10}", ty.name(), human_bytes(*b));
    }
    record
        .metric("bytes_in", bytes_in)
        .metric("bytes_out", bytes_out)
        .metric(
            "tensor_types",
            by_type
                .iter()
                .map(|(t, (n, b))| serde_json::json!({"type": t.name(), "tensors": n, "bytes": b}))
                .collect::<Vec<_>>(),
        )
        .timing("quantize", t_quant)
        .output(output);
    let rec = record.write(&ctx.runs_dir)?;
    println!("run record: {}", rec.display());
    Ok(())
}

/// `smelt gguf validate`.
fn validate(ctx: &Context, model: &str) -> Result<()> {
    let path = resolve_model(ctx, model)?;
    let file = GgufFile::open(&path)?;
    let h = &file.header;
    let (mut checked, mut skipped) = (0usize, Vec::new());
    for t in &h.tensors {
        if !smelt_gguf::blocks::DEQUANTIZE_TYPES.contains(&t.ggml_type) {
            skipped.push(t.ggml_type.name());
            continue;
        }
        let values =
            smelt_gguf::blocks::dequantize(t.ggml_type, file.tensor_data(t), t.elements() as usize)
                .with_context(|| format!("tensor {}", t.name))?;
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            bail!(
                "tensor {} ({}) holds a non-finite value at index {i}: {}",
                t.name,
                t.ggml_type.name(),
                values[i]
            );
        }
        checked += 1;
    }
    skipped.sort();
    skipped.dedup();
    println!(
        "{}: valid GGUF v{} ({} metadata keys, {} tensors, data at byte {}, alignment {}); values of {checked} tensors decoded and finite{}",
        path.display(),
        h.version,
        h.metadata.len(),
        h.tensors.len(),
        h.data_offset,
        h.alignment,
        if skipped.is_empty() {
            String::new()
        } else {
            format!("; types not decoded yet: {}", skipped.join(", "))
        }
    );
    Ok(())
}

fn value_json(v: &MetaValue, full: bool) -> serde_json::Value {
    use serde_json::json;
    match v {
        MetaValue::Array(t, items) if !full && items.len() > 16 => json!({
            "array_of": t.name(), "len": items.len(),
            "head": items.iter().take(8).map(|i| value_json(i, false)).collect::<Vec<_>>()
        }),
        MetaValue::Array(_, items) => json!(
            items
                .iter()
                .map(|i| value_json(i, full))
                .collect::<Vec<_>>()
        ),
        MetaValue::String(s) => json!(s),
        MetaValue::Bool(b) => json!(b),
        MetaValue::F32(f) => json!(f),
        MetaValue::F64(f) => json!(f),
        MetaValue::I8(_) | MetaValue::I16(_) | MetaValue::I32(_) | MetaValue::I64(_) => {
            json!(v.as_f64().map(|f| f as i64))
        }
        other => json!(other.as_u64()),
    }
}

/// The `--json` form of `smelt gguf inspect`.
pub fn to_json(file: &GgufFile, full: bool) -> serde_json::Value {
    let h = &file.header;
    let params = file.parameter_count();
    let bytes: u64 = h.tensors.iter().map(|t| t.size).sum();
    serde_json::json!({
        "path": file.path.display().to_string(),
        "version": h.version,
        "alignment": h.alignment,
        "data_offset": h.data_offset,
        "file_bytes": h.file_len,
        "metadata": h.metadata.iter().map(|(k, v)| serde_json::json!({
            "key": k, "type": v.meta_type().name(), "value": value_json(v, full)})).collect::<Vec<_>>(),
        "tensors": h.tensors.iter().map(|t| serde_json::json!({
            "name": t.name, "type": t.ggml_type.name(), "dims": t.dims,
            "offset": t.offset, "bytes": t.size})).collect::<Vec<_>>(),
        "totals": {"tensors": h.tensors.len(), "parameters": params, "bytes": bytes,
                   "bits_per_weight": bytes as f64 * 8.0 / params.max(1) as f64},
    })
}

/// A path if `model` names an existing file, else the single `.gguf` of the asset `model`
/// (fetched on first use).
pub fn resolve_model(ctx: &Context, model: &str) -> Result<PathBuf> {
    let p = Path::new(model);
    if p.exists() {
        return Ok(p.to_path_buf());
    }
    let Some(asset) = smelt_data::assets::find(model) else {
        bail!(
            "{model}: no such file, and not an asset name (model assets: {})",
            smelt_data::assets::ALL
                .iter()
                .filter(|a| a.keep.iter().any(|k| k.ends_with(".gguf")))
                .map(|a| a.name)
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    Ok(ctx.fetcher().ensure_gguf(asset)?)
}

fn show_value(v: &MetaValue, full: bool) -> String {
    match v {
        MetaValue::String(s) if !full && s.chars().count() > 80 => {
            let head: String = s.chars().take(77).collect();
            format!("{head:?}... ({} chars)", s.chars().count())
        }
        MetaValue::String(s) => format!("{s:?}"),
        MetaValue::Array(t, items) if !full && items.len() > 8 => {
            let head: Vec<String> = items.iter().take(4).map(|i| show_value(i, false)).collect();
            format!("[{}; {}] [{}, ...]", t.name(), items.len(), head.join(", "))
        }
        MetaValue::Array(_, items) => {
            let all: Vec<String> = items.iter().map(|i| show_value(i, full)).collect();
            format!("[{}]", all.join(", "))
        }
        other => {
            let s = format!("{other:?}");
            // `U32(30)` -> `30`
            s.split_once('(')
                .map(|(_, r)| r.trim_end_matches(')').to_string())
                .unwrap_or(s)
        }
    }
}

/// Per-type totals: (tensor count, elements, bytes).
pub fn type_histogram(file: &GgufFile) -> BTreeMap<GgmlType, (usize, u64, u64)> {
    let mut by_type = BTreeMap::new();
    for t in &file.header.tensors {
        let e = by_type.entry(t.ggml_type).or_insert((0usize, 0u64, 0u64));
        e.0 += 1;
        e.1 += t.elements();
        e.2 += t.size;
    }
    by_type
}

/// The human summary `smelt gguf inspect` prints.
pub fn describe(file: &GgufFile, full: bool) -> String {
    let h = &file.header;
    let mut s = String::new();
    s += &format!(
        "{}: GGUF v{}, {}, alignment {}, data at byte {}\n",
        file.path.display(),
        h.version,
        human_bytes(h.file_len),
        h.alignment,
        h.data_offset
    );
    s += &format!("metadata ({} keys):\n", h.metadata.len());
    for (k, v) in &h.metadata {
        s += &format!("  {k:<40} {}\n", show_value(v, full));
    }
    s += &tokenizer_summary(h);
    let params = file.parameter_count();
    let bytes: u64 = h.tensors.iter().map(|t| t.size).sum();
    s += &format!(
        "tensors: {} tensors, {:.1} M parameters, {} of data, {:.2} bits/weight overall\n",
        h.tensors.len(),
        params as f64 / 1e6,
        human_bytes(bytes),
        bytes as f64 * 8.0 / params.max(1) as f64
    );
    s += &format!(
        "  {:<8} {:>7} {:>12} {:>10} {:>11}\n",
        "type", "tensors", "parameters", "bytes", "bits/weight"
    );
    for (t, (n, e, b)) in type_histogram(file) {
        s += &format!(
            "  {:<8} {:>7} {:>12} {:>10} {:>11.2}\n",
            t.name(),
            n,
            e,
            human_bytes(b),
            t.bits_per_weight()
        );
    }
    s
}

/// One paragraph about the tokenizer stored in the metadata (empty when there is none).
fn tokenizer_summary(h: &smelt_gguf::Header) -> String {
    let Some(model) = h.get("tokenizer.ggml.model").and_then(|v| v.as_str()) else {
        return String::new();
    };
    let array_len = |k: &str| match h.get(k) {
        Some(MetaValue::Array(_, items)) => items.len(),
        _ => 0,
    };
    let token = |id: u64| match h.get("tokenizer.ggml.tokens") {
        Some(MetaValue::Array(_, items)) => items
            .get(id as usize)
            .and_then(|t| t.as_str())
            .map(|t| format!("{t:?}"))
            .unwrap_or_else(|| "out of range".into()),
        _ => "?".into(),
    };
    let mut s = format!(
        "tokenizer: {model} (pre-tokenizer {}), {} tokens, {} merges",
        h.get("tokenizer.ggml.pre")
            .and_then(|v| v.as_str())
            .unwrap_or("default"),
        array_len("tokenizer.ggml.tokens"),
        array_len("tokenizer.ggml.merges")
    );
    for (name, key) in [
        ("bos", "tokenizer.ggml.bos_token_id"),
        ("eos", "tokenizer.ggml.eos_token_id"),
        ("unk", "tokenizer.ggml.unknown_token_id"),
        ("pad", "tokenizer.ggml.padding_token_id"),
    ] {
        if let Some(id) = h.get(key).and_then(|v| v.as_u64()) {
            s += &format!(", {name} {id} {}", token(id));
        }
    }
    match h.get("tokenizer.chat_template").and_then(|v| v.as_str()) {
        Some(t) => s += &format!("; chat template of {} chars", t.chars().count()),
        None => s += "; no chat template",
    }
    s + "\n"
}

fn tensor_table(file: &GgufFile) -> String {
    let mut s = format!(
        "  {:<40} {:<8} {:<22} {:>10} {:>12}\n",
        "name", "type", "dims", "bytes", "offset"
    );
    for t in &file.header.tensors {
        s += &format!(
            "  {:<40} {:<8} {:<22} {:>10} {:>12}\n",
            t.name,
            t.ggml_type.name(),
            format!("{:?}", t.dims),
            t.size,
            t.offset
        );
    }
    s
}
