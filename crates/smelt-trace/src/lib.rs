//! Profiling: timed spans collected process-wide and written as Chrome trace-event JSON (opens
//! in Perfetto and chrome://tracing), a per-phase table of the same spans, and TensorBoard
//! event files (scalars and histograms) that TensorBoard's own reader loads.
//!
//! Spans cost one relaxed atomic load when tracing is off, so the hot paths keep them in
//! always; with tracing on, each finished span takes a mutex push.

#![deny(missing_docs)]

pub mod chrome;
pub mod crc32c;
pub mod tensorboard;

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

/// One finished span.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanEvent {
    /// What ran (e.g. `prefill`, `attention`).
    pub name: Cow<'static, str>,
    /// Its category (e.g. `phase`, `op`, `layer`).
    pub cat: &'static str,
    /// Start, microseconds since tracing was enabled.
    pub start_us: f64,
    /// Duration in microseconds.
    pub dur_us: f64,
    /// Small id of the thread it ran on.
    pub tid: u32,
    /// Extra numbers shown with the span (bytes, flops, tokens, ...).
    pub args: Vec<(&'static str, f64)>,
}

struct Collector {
    start: Instant,
    events: Mutex<Vec<SpanEvent>>,
    threads: Mutex<Vec<(u32, String)>>,
}

/// Spans kept at most (about 100 bytes each); later ones are counted in [`dropped`], so a
/// long `serve --trace` cannot grow without bound.
pub const MAX_SPANS: usize = 2_000_000;

static ENABLED: AtomicBool = AtomicBool::new(false);
static DROPPED: AtomicU64 = AtomicU64::new(0);
static COLLECTOR: OnceLock<Collector> = OnceLock::new();
static NEXT_TID: AtomicU32 = AtomicU32::new(1);

thread_local! {
    static TID: u32 = {
        let id = NEXT_TID.fetch_add(1, Ordering::Relaxed);
        let name = std::thread::current()
            .name()
            .map(String::from)
            .unwrap_or_else(|| format!("thread {id}"));
        if let Some(c) = COLLECTOR.get() {
            lock(&c.threads).push((id, name));
        }
        id
    };
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn collector() -> &'static Collector {
    COLLECTOR.get_or_init(|| Collector {
        start: Instant::now(),
        events: Mutex::new(Vec::new()),
        threads: Mutex::new(Vec::new()),
    })
}

/// Starts collecting spans (from now on; earlier spans are not recorded).
pub fn enable() {
    collector();
    ENABLED.store(true, Ordering::SeqCst);
}

/// Stops collecting for now (spans so far are kept; [`enable`] resumes).
pub fn pause() {
    ENABLED.store(false, Ordering::SeqCst);
}

/// Whether spans are being collected.
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Stops collecting and returns every span so far, ordered by start, with the thread names.
pub fn take() -> (Vec<SpanEvent>, Vec<(u32, String)>) {
    ENABLED.store(false, Ordering::SeqCst);
    let Some(c) = COLLECTOR.get() else {
        return (Vec::new(), Vec::new());
    };
    let mut events = std::mem::take(&mut *lock(&c.events));
    DROPPED.store(0, Ordering::Relaxed);
    events.sort_by(|a, b| a.start_us.total_cmp(&b.start_us));
    (events, lock(&c.threads).clone())
}

/// A running span; it is recorded when dropped (if tracing was on when it started).
#[must_use = "a span measures until it is dropped"]
pub struct Span {
    start: Option<Instant>,
    name: Cow<'static, str>,
    cat: &'static str,
    args: Vec<(&'static str, f64)>,
}

impl Span {
    /// Attaches a number shown with the span (no-op when tracing is off).
    pub fn arg(mut self, key: &'static str, value: f64) -> Self {
        if self.start.is_some() {
            self.args.push((key, value));
        }
        self
    }
}

/// Starts a span named `name` in category `cat`.
#[inline]
pub fn span(cat: &'static str, name: &'static str) -> Span {
    Span {
        start: enabled().then(Instant::now),
        name: Cow::Borrowed(name),
        cat,
        args: Vec::new(),
    }
}

/// [`span`] with a name built at run time (only when tracing is on).
#[inline]
pub fn span_owned(cat: &'static str, name: impl FnOnce() -> String) -> Span {
    let start = enabled().then(Instant::now);
    Span {
        name: if start.is_some() {
            Cow::Owned(name())
        } else {
            Cow::Borrowed("")
        },
        start,
        cat,
        args: Vec::new(),
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        let Some(start) = self.start else {
            return;
        };
        let c = collector();
        let event = SpanEvent {
            name: std::mem::take(&mut self.name),
            cat: self.cat,
            start_us: start.duration_since(c.start).as_secs_f64() * 1e6,
            dur_us: start.elapsed().as_secs_f64() * 1e6,
            tid: TID.with(|t| *t),
            args: std::mem::take(&mut self.args),
        };
        let mut events = lock(&c.events);
        if events.len() < MAX_SPANS {
            events.push(event);
        } else {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Spans left out since the last [`take`] because [`MAX_SPANS`] were already held.
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// One row of the per-phase table.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseRow {
    /// Category.
    pub cat: &'static str,
    /// Span name.
    pub name: String,
    /// Spans with this name.
    pub count: usize,
    /// Their summed duration, milliseconds.
    pub total_ms: f64,
    /// Share of the wall time from the first span's start to the last span's end.
    pub share: f64,
}

/// Spans grouped by (category, name), largest total first.
pub fn phase_table(events: &[SpanEvent]) -> Vec<PhaseRow> {
    let start = events
        .iter()
        .map(|e| e.start_us)
        .fold(f64::INFINITY, f64::min);
    let end = events
        .iter()
        .map(|e| e.start_us + e.dur_us)
        .fold(f64::NEG_INFINITY, f64::max);
    let wall_ms = ((end - start) / 1e3).max(1e-9);
    let mut rows: Vec<PhaseRow> = Vec::new();
    for e in events {
        match rows.iter_mut().find(|r| r.cat == e.cat && r.name == e.name) {
            Some(r) => {
                r.count += 1;
                r.total_ms += e.dur_us / 1e3;
            }
            None => rows.push(PhaseRow {
                cat: e.cat,
                name: e.name.to_string(),
                count: 1,
                total_ms: e.dur_us / 1e3,
                share: 0.0,
            }),
        }
    }
    for r in rows.iter_mut() {
        r.share = r.total_ms / wall_ms;
    }
    rows.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms));
    rows
}

/// The table as aligned text.
pub fn format_phase_table(rows: &[PhaseRow]) -> String {
    let mut s = format!(
        "{:<8} {:<24} {:>8} {:>12} {:>12} {:>8}\n",
        "category", "span", "count", "total ms", "mean us", "% wall"
    );
    for r in rows {
        s.push_str(&format!(
            "{:<8} {:<24} {:>8} {:>12.2} {:>12.1} {:>7.1}%\n",
            r.cat,
            r.name,
            r.count,
            r.total_ms,
            r.total_ms * 1e3 / r.count as f64,
            r.share * 100.0
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_are_recorded_only_while_enabled_and_tabled() {
        drop(span("op", "before"));
        enable();
        {
            let _outer = span("phase", "outer");
            for _ in 0..3 {
                let _s = span("op", "inner").arg("bytes", 64.0);
                std::hint::black_box((0..1000).sum::<u64>());
            }
            drop(span_owned("layer", || format!("layer {}", 7)));
        }
        let (events, threads) = take();
        drop(span("op", "after"));
        let names: Vec<&str> = events.iter().map(|e| e.name.as_ref()).collect();
        assert!(!names.contains(&"before") && !names.contains(&"after"));
        assert_eq!(names.iter().filter(|n| **n == "inner").count(), 3);
        assert!(names.contains(&"layer 7") && names.contains(&"outer"));
        assert!(events.iter().all(|e| e.dur_us >= 0.0));
        assert!(!threads.is_empty());
        let outer = events.iter().find(|e| e.name == "outer").unwrap();
        for e in events.iter().filter(|e| e.name == "inner") {
            assert!(
                e.start_us >= outer.start_us
                    && e.start_us + e.dur_us <= outer.start_us + outer.dur_us + 1.0
            );
            assert_eq!(e.args, vec![("bytes", 64.0)]);
        }
        let table = phase_table(&events);
        assert_eq!(table[0].name, "outer");
        assert!((table[0].share - 1.0).abs() < 1e-6);
        let inner = table.iter().find(|r| r.name == "inner").unwrap();
        assert_eq!(inner.count, 3);
        assert!(format_phase_table(&table).contains("inner"));
    }
}
