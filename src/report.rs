//! Printing run results: plain text for people, one JSON record per step
//! for tools.

use serde_json::json;

use crate::scenario::run::StepRecord;

/// A step as text lines (with narrative and extra output), for a terminal.
pub fn text(rec: &StepRecord, narrate: bool) -> String {
    let mut out = String::new();
    if let Some(say) = &rec.say {
        if narrate {
            out.push_str(&format!("\n  {say}\n"));
        }
    }
    if rec.verb != "say" {
        let mark = if rec.pass { "ok  " } else { "FAIL" };
        let expect = if rec.pass { String::new() } else { format!(", expected {}", rec.expected) };
        let wait = if rec.micros >= 10_000 { format!("  [{} ms]", rec.micros / 1000) } else { String::new() };
        // In a story across processes, who did it comes first.
        let who = rec.process.as_deref().map_or(String::new(), |p| format!("[{p}] "));
        out.push_str(&format!("  {mark} line {:<4} {who}{} -> {}{expect}{wait}\n", rec.line, rec.detail, rec.outcome));
    }
    for l in &rec.output {
        out.push_str(&format!("           {l}\n"));
    }
    out
}

/// A step as one JSON record.
pub fn json(file: &str, rec: &StepRecord) -> serde_json::Value {
    json!({
        "file": file, "step": rec.index, "line": rec.line, "verb": rec.verb, "say": rec.say,
        "detail": rec.detail, "outcome": rec.outcome, "expected": rec.expected, "pass": rec.pass,
        "micros": rec.micros as u64, "output": rec.output,
        "process": rec.process.as_deref().unwrap_or("primary"),
    })
}
