//! `--trace FILE` for the verbs that run a model: collect spans while the verb runs, then write
//! them as Chrome trace-event JSON (open in https://ui.perfetto.dev), print the per-phase table
//! and a roofline line per matrix product (bytes and flops moved against the memory read
//! bandwidth measured right after).

use std::path::Path;

use anyhow::{Context as _, Result};

/// Starts collecting spans when a trace file was asked for.
pub fn start(trace: Option<&Path>) {
    if trace.is_some() {
        smelt_trace::enable();
    }
}

/// Writes the trace and prints the tables (no-op without a trace file).
pub fn finish(trace: Option<&Path>, threads: usize) -> Result<()> {
    let Some(path) = trace else {
        return Ok(());
    };
    let dropped = smelt_trace::dropped();
    let (events, thread_names) = smelt_trace::take();
    if dropped > 0 {
        eprintln!(
            "trace: held the first {} spans; {dropped} later ones were left out",
            smelt_trace::MAX_SPANS
        );
    }
    smelt_trace::chrome::write(path, &events, &thread_names, "smelt")
        .with_context(|| format!("writing {}", path.display()))?;
    let rows = smelt_trace::phase_table(&events);
    eprintln!(
        "\ntrace: {} spans -> {} (open in https://ui.perfetto.dev)\n",
        events.len(),
        path.display()
    );
    eprint!("{}", smelt_trace::format_phase_table(&rows));
    let bandwidth = super::bench::read_bandwidth_gbs(threads.max(1));
    eprintln!(
        "\nroofline (memory read bandwidth measured now: {bandwidth:.1} GB/s on {threads} threads)"
    );
    eprintln!(
        "{:<14} {:>8} {:>10} {:>10} {:>10} {:>12} {:>10}",
        "product", "calls", "GB read", "GB/s", "GFLOP/s", "flops/byte", "% of roof"
    );
    for r in rows.iter().filter(|r| r.cat == "matmul") {
        let (mut bytes, mut flops) = (0.0, 0.0);
        for e in events
            .iter()
            .filter(|e| e.cat == "matmul" && e.name == r.name)
        {
            for (k, v) in &e.args {
                match *k {
                    "bytes" => bytes += v,
                    "flops" => flops += v,
                    _ => {}
                }
            }
        }
        let secs = r.total_ms / 1e3;
        let gbs = bytes / secs / 1e9;
        eprintln!(
            "{:<14} {:>8} {:>10.3} {:>10.1} {:>10.1} {:>12.2} {:>9.0}%",
            r.name,
            r.count,
            bytes / 1e9,
            gbs,
            flops / secs / 1e9,
            flops / bytes.max(1.0),
            100.0 * gbs / bandwidth
        );
    }
    eprintln!(
        "(% of roof: achieved weight-read bandwidth over the measured read bandwidth; products with many tokens per call are compute-bound and sit lower)"
    );
    Ok(())
}
