//! TensorBoard event files: TFRecord framing (u64 length, masked CRC-32C of the length, the
//! record, masked CRC-32C of the record) around `tensorflow.Event` protos holding scalar and
//! histogram summaries. The messages are the subset of TensorBoard's `event.proto` and
//! `summary.proto` that smelt writes, as prost derives (field numbers from those files).
//!
//! An event file is a log that TensorBoard reads while it grows, so it is appended to and
//! flushed record by record rather than written under a temporary name: a crash leaves whole
//! records followed at most by one torn record, which the reader drops.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use prost::Message;

use crate::crc32c::masked;

/// `tensorflow.Event`.
#[derive(Clone, PartialEq, Message)]
pub struct Event {
    /// Seconds since the epoch.
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    /// Global step.
    #[prost(int64, tag = "2")]
    pub step: i64,
    /// `brain.Event:2` in the first record of a file.
    #[prost(string, optional, tag = "3")]
    pub file_version: Option<String>,
    /// Summary values.
    #[prost(message, optional, tag = "5")]
    pub summary: Option<Summary>,
}

/// `tensorflow.Summary`.
#[derive(Clone, PartialEq, Message)]
pub struct Summary {
    /// Values.
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<SummaryValue>,
}

/// `tensorflow.Summary.Value` (scalar or histogram).
#[derive(Clone, PartialEq, Message)]
pub struct SummaryValue {
    /// Tag (slash-separated groups show as sections).
    #[prost(string, tag = "1")]
    pub tag: String,
    /// A scalar.
    #[prost(float, optional, tag = "2")]
    pub simple_value: Option<f32>,
    /// A histogram.
    #[prost(message, optional, tag = "5")]
    pub histo: Option<HistogramProto>,
}

/// `tensorflow.HistogramProto`: bucket i counts values in (bucket_limit[i−1], bucket_limit[i]].
#[derive(Clone, PartialEq, Message)]
pub struct HistogramProto {
    /// Smallest value.
    #[prost(double, tag = "1")]
    pub min: f64,
    /// Largest value.
    #[prost(double, tag = "2")]
    pub max: f64,
    /// Number of values.
    #[prost(double, tag = "3")]
    pub num: f64,
    /// Their sum.
    #[prost(double, tag = "4")]
    pub sum: f64,
    /// Sum of their squares.
    #[prost(double, tag = "5")]
    pub sum_squares: f64,
    /// Right edges of the buckets.
    #[prost(double, repeated, tag = "6")]
    pub bucket_limit: Vec<f64>,
    /// Counts per bucket.
    #[prost(double, repeated, tag = "7")]
    pub bucket: Vec<f64>,
}

impl HistogramProto {
    /// A histogram of `values` in `bins` equal buckets between their min and max (non-finite
    /// values are skipped).
    pub fn of(values: &[f32], bins: usize) -> Self {
        let v: Vec<f64> = values
            .iter()
            .filter(|x| x.is_finite())
            .map(|&x| x as f64)
            .collect();
        let bins = bins.max(1);
        let (lo, hi) = v
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
                (a.min(x), b.max(x))
            });
        if v.is_empty() {
            return Self::default();
        }
        let width = ((hi - lo) / bins as f64).max(f64::MIN_POSITIVE);
        let mut bucket = vec![0.0; bins];
        for &x in &v {
            let i = (((x - lo) / width) as usize).min(bins - 1);
            bucket[i] += 1.0;
        }
        Self {
            min: lo,
            max: hi,
            num: v.len() as f64,
            sum: v.iter().sum(),
            sum_squares: v.iter().map(|x| x * x).sum(),
            bucket_limit: (1..=bins).map(|i| lo + width * i as f64).collect(),
            bucket,
        }
    }
}

/// Appends TFRecord-framed events to one `events.out.tfevents.*` file.
pub struct EventWriter {
    out: BufWriter<File>,
    path: PathBuf,
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl EventWriter {
    /// A new event file in `dir` (created if needed), named as TensorFlow names them.
    pub fn create(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into());
        let name = format!(
            "events.out.tfevents.{}.{host}.{}.smelt",
            now() as u64,
            std::process::id()
        );
        let path = dir.join(name);
        let mut w = Self {
            out: BufWriter::new(File::create(&path)?),
            path,
        };
        w.write_event(&Event {
            wall_time: now(),
            step: 0,
            file_version: Some("brain.Event:2".into()),
            summary: None,
        })?;
        Ok(w)
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one event and flushes it.
    pub fn write_event(&mut self, e: &Event) -> std::io::Result<()> {
        let data = e.encode_to_vec();
        let len = (data.len() as u64).to_le_bytes();
        self.out.write_all(&len)?;
        self.out.write_all(&masked(&len).to_le_bytes())?;
        self.out.write_all(&data)?;
        self.out.write_all(&masked(&data).to_le_bytes())?;
        self.out.flush()
    }

    fn summary(&mut self, step: i64, value: SummaryValue) -> std::io::Result<()> {
        self.write_event(&Event {
            wall_time: now(),
            step,
            file_version: None,
            summary: Some(Summary { value: vec![value] }),
        })
    }

    /// A scalar `value` for `tag` at `step`.
    pub fn scalar(&mut self, tag: &str, value: f32, step: i64) -> std::io::Result<()> {
        self.summary(
            step,
            SummaryValue {
                tag: tag.into(),
                simple_value: Some(value),
                histo: None,
            },
        )
    }

    /// A histogram of `values` (30 buckets) for `tag` at `step`.
    pub fn histogram(&mut self, tag: &str, values: &[f32], step: i64) -> std::io::Result<()> {
        self.summary(
            step,
            SummaryValue {
                tag: tag.into(),
                simple_value: None,
                histo: Some(HistogramProto::of(values, 30)),
            },
        )
    }
}

/// Reads back the events of a file, checking every length and CRC (for tests and tools).
pub fn read_events(bytes: &[u8]) -> Result<Vec<Event>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let head = bytes
            .get(at..at + 12)
            .ok_or(format!("torn record header at byte {at}"))?;
        let len_bytes = &head[..8];
        let len = u64::from_le_bytes(len_bytes.try_into().expect("8 bytes")) as usize;
        if u32::from_le_bytes(head[8..12].try_into().expect("4 bytes")) != masked(len_bytes) {
            return Err(format!("length CRC mismatch at byte {at}"));
        }
        let end = (at + 12)
            .checked_add(len)
            .and_then(|e| e.checked_add(4))
            .filter(|&e| e <= bytes.len())
            .ok_or(format!("record at byte {at} runs past the end"))?;
        let data = &bytes[at + 12..end - 4];
        if u32::from_le_bytes(bytes[end - 4..end].try_into().expect("4 bytes")) != masked(data) {
            return Err(format!("data CRC mismatch at byte {at}"));
        }
        out.push(Event::decode(data).map_err(|e| format!("record at byte {at}: {e}"))?);
        at = end;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_and_corruption_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::create(dir.path()).unwrap();
        w.scalar("loss", 0.5, 1).unwrap();
        w.histogram("w", &[1.0, 2.0, 2.0, 3.0], 1).unwrap();
        let bytes = std::fs::read(w.path()).unwrap();
        let ev = read_events(&bytes).unwrap();
        assert_eq!(ev.len(), 3);
        assert_eq!(ev[0].file_version.as_deref(), Some("brain.Event:2"));
        let v = &ev[1].summary.as_ref().unwrap().value[0];
        assert_eq!((v.tag.as_str(), v.simple_value), ("loss", Some(0.5)));
        let h = ev[2].summary.as_ref().unwrap().value[0]
            .histo
            .clone()
            .unwrap();
        assert_eq!(
            (h.min, h.max, h.num, h.sum, h.sum_squares),
            (1.0, 3.0, 4.0, 8.0, 18.0)
        );
        assert_eq!(h.bucket.iter().sum::<f64>(), 4.0);
        assert_eq!(*h.bucket_limit.last().unwrap(), 3.0);
        let mut bad = bytes.clone();
        let last = bad.len() - 6;
        bad[last] ^= 1;
        assert!(read_events(&bad).unwrap_err().contains("CRC"));
        assert!(read_events(&bytes[..bytes.len() - 3]).is_err());
    }
}
