//! `smelt fetch` and `smelt assets`.

use std::time::Instant;

use anyhow::{Result, bail};
use smelt_data::{Asset, Outcome, State, assets};
use smelt_files::human_bytes;

use crate::Context;

/// Arguments of `smelt fetch`.
#[derive(clap::Args)]
pub struct FetchArgs {
    /// Asset names (see `smelt assets`).
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    names: Vec<String>,
    /// Fetch every asset.
    #[arg(long)]
    all: bool,
    /// Download again even if a verified copy is cached.
    #[arg(long)]
    force: bool,
}

/// Resolves asset names, failing on the first unknown one with the list of valid names.
pub fn resolve(names: &[String]) -> Result<Vec<&'static Asset>> {
    names
        .iter()
        .map(|n| {
            assets::find(n).ok_or_else(|| {
                smelt_data::FetchError::UnknownAsset {
                    name: n.clone(),
                    valid: assets::names(),
                }
                .into()
            })
        })
        .collect()
}

/// `smelt fetch`.
pub fn fetch(ctx: &Context, args: &FetchArgs) -> Result<()> {
    let list: Vec<&Asset> = if args.all {
        assets::ALL.iter().collect()
    } else {
        resolve(&args.names)?
    };
    let fetcher = ctx.fetcher();
    let mut failed = Vec::new();
    for asset in list {
        let t = Instant::now();
        match fetcher.fetch(asset, args.force) {
            Ok(Outcome::AlreadyPresent(m)) => println!(
                "{:<18} already fetched and verified ({}, {})",
                asset.name,
                super::count_files(m.files.len()),
                human_bytes(m.total_bytes())
            ),
            Ok(Outcome::Fetched { manifest, repaired }) => println!(
                "{:<18} {} ({}, {}) in {:.1} s -> {}",
                asset.name,
                if repaired { "repaired" } else { "fetched" },
                super::count_files(manifest.files.len()),
                human_bytes(manifest.total_bytes()),
                t.elapsed().as_secs_f64(),
                fetcher.asset_dir(asset).display()
            ),
            Err(e) => {
                eprintln!("error: {}: {e}", asset.name);
                failed.push(asset.name);
            }
        }
    }
    if !failed.is_empty() {
        bail!(
            "{} asset(s) could not be fetched: {}",
            failed.len(),
            failed.join(", ")
        );
    }
    Ok(())
}

/// `smelt assets`.
pub fn list(ctx: &Context) -> Result<()> {
    let fetcher = ctx.fetcher();
    println!("cache: {}", fetcher.home().display());
    println!(
        "{:<18} {:<8} {:>9}  {:<56} license",
        "asset", "state", "size", "source"
    );
    let mut corrupt = Vec::new();
    for a in assets::ALL {
        let state = fetcher.state(a, true);
        let size = match &state {
            State::Fetched(m) => human_bytes(m.total_bytes()),
            _ => format!("~{}", human_bytes(a.download_bytes)),
        };
        println!(
            "{:<18} {:<8} {:>9}  {:<56} {}",
            a.name,
            state.word(),
            size,
            a.source.to_string(),
            a.license
        );
        match state {
            State::Corrupt(why) => corrupt.push(format!("corrupt: {}: {why}", a.name)),
            State::Outdated(why) => corrupt.push(format!("outdated: {}: {why}", a.name)),
            _ => {}
        }
    }
    for c in &corrupt {
        println!("  {c}  (run `smelt fetch` with this asset to repair it)");
    }
    Ok(())
}
