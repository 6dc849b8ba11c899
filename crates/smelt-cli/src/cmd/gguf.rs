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
    },
}

/// Runs a `smelt gguf` verb.
pub fn run(ctx: &Context, cmd: GgufCommand) -> Result<()> {
    match cmd {
        GgufCommand::Inspect {
            model,
            tensors,
            full,
        } => {
            let path = resolve_model(ctx, &model)?;
            let file = GgufFile::open(&path)?;
            print!("{}", describe(&file, full));
            if tensors {
                print!("{}", tensor_table(&file));
            }
            Ok(())
        }
    }
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
    let dir = ctx.fetcher().ensure(asset)?;
    let ggufs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "gguf"))
        .collect();
    match ggufs.as_slice() {
        [one] => Ok(one.clone()),
        _ => bail!(
            "asset {model} holds {} .gguf files, expected one",
            ggufs.len()
        ),
    }
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

fn tensor_table(file: &GgufFile) -> String {
    let mut s = format!(
        "  {:<40} {:<8} {:<22} {:>12}\n",
        "name", "type", "dims", "offset"
    );
    for t in &file.header.tensors {
        s += &format!(
            "  {:<40} {:<8} {:<22} {:>12}\n",
            t.name,
            t.ggml_type.name(),
            format!("{:?}", t.dims),
            t.offset
        );
    }
    s
}
