//! Chrome trace-event JSON ("JSON Object Format" of the Trace Event Format): complete events
//! (`ph: "X"`, microsecond `ts`/`dur`) and thread-name metadata (`ph: "M"`). Perfetto and
//! chrome://tracing open it.

use std::path::Path;

use serde_json::{Value, json};

use crate::SpanEvent;

/// The trace document for `events` recorded on `threads` (id, name).
pub fn trace_json(events: &[SpanEvent], threads: &[(u32, String)], process: &str) -> Value {
    let pid = std::process::id();
    let mut out: Vec<Value> = vec![json!({
        "name": "process_name", "ph": "M", "pid": pid, "tid": 0, "args": {"name": process},
    })];
    for (tid, name) in threads {
        out.push(json!({
            "name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": name},
        }));
    }
    for e in events {
        let args: serde_json::Map<String, Value> = e
            .args
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        out.push(json!({
            "name": e.name, "cat": e.cat, "ph": "X", "ts": e.start_us, "dur": e.dur_us,
            "pid": pid, "tid": e.tid, "args": args,
        }));
    }
    json!({"traceEvents": out, "displayTimeUnit": "ms"})
}

/// Writes the trace to `path` (temporary name, then rename).
pub fn write(
    path: &Path,
    events: &[SpanEvent],
    threads: &[(u32, String)],
    process: &str,
) -> std::io::Result<()> {
    let doc = trace_json(events, threads, process);
    smelt_files::write_atomic(path, doc.to_string().as_bytes())
}

/// Checks a document against the parts of the Trace Event Format smelt writes: an object with a
/// `traceEvents` array whose events have a string `name`, a known `ph`, integer `pid`/`tid`,
/// and for complete events numeric `ts` ≥ 0 and `dur` ≥ 0. Returns the first violation.
pub fn check(doc: &Value) -> Result<(), String> {
    let events = doc
        .get("traceEvents")
        .and_then(Value::as_array)
        .ok_or("no traceEvents array")?;
    for (i, e) in events.iter().enumerate() {
        let field = |k: &str| e.get(k).ok_or(format!("event {i}: no `{k}`"));
        field("name")?
            .as_str()
            .ok_or(format!("event {i}: name is not a string"))?;
        for k in ["pid", "tid"] {
            field(k)?
                .as_u64()
                .ok_or(format!("event {i}: {k} is not an unsigned integer"))?;
        }
        match field("ph")?.as_str() {
            Some("X") => {
                for k in ["ts", "dur"] {
                    let v = field(k)?
                        .as_f64()
                        .ok_or(format!("event {i}: {k} is not a number"))?;
                    if !(v >= 0.0 && v.is_finite()) {
                        return Err(format!("event {i}: {k} = {v}"));
                    }
                }
                if let Some(a) = e.get("args")
                    && !a.is_object()
                {
                    return Err(format!("event {i}: args is not an object"));
                }
            }
            Some("M") => {
                field("args")?
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or(format!("event {i}: metadata without args.name"))?;
            }
            other => return Err(format!("event {i}: unexpected ph {other:?}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_traces_pass_the_check_and_bad_ones_fail() {
        let events = vec![SpanEvent {
            name: "decode".into(),
            cat: "phase",
            start_us: 10.0,
            dur_us: 5.5,
            tid: 1,
            args: vec![("tokens", 1.0)],
        }];
        let doc = trace_json(&events, &[(1, "main".into())], "smelt");
        check(&doc).unwrap();
        assert_eq!(doc["traceEvents"][2]["ph"], "X");
        assert_eq!(doc["traceEvents"][2]["args"]["tokens"], 1.0);
        let mut bad = doc.clone();
        bad["traceEvents"][2]["dur"] = json!(-1.0);
        assert!(check(&bad).unwrap_err().contains("dur"));
        let mut bad = doc.clone();
        bad["traceEvents"][2]["ph"] = json!("Q");
        assert!(check(&bad).is_err());
        assert!(check(&json!({"events": []})).is_err());
    }
}
