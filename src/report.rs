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

#[cfg(test)]
mod tests {
    use super::*;

    fn record(process: Option<&str>) -> StepRecord {
        StepRecord {
            index: 3,
            line: 29,
            verb: "pass",
            say: Some("The buffer goes to the client.".into()),
            detail: "pass buffer fd buf (fd 13) to client over SCM_RIGHTS, as cbuf".into(),
            outcome: "ok".into(),
            expected: "ok".into(),
            pass: true,
            micros: 5,
            output: vec!["client holds it as fd 3".into()],
            process: process.map(str::to_owned),
        }
    }

    #[test]
    fn a_step_across_processes_names_its_process_in_text_and_json() {
        let text = text(&record(Some("primary")), true);
        assert!(text.contains("line 29   [primary] pass buffer fd buf"), "{text}");
        assert!(text.contains("The buffer goes to the client."), "{text}");
        assert_eq!(json("f.toml", &record(Some("client")))["process"], "client");
    }

    #[test]
    fn a_single_process_scenario_prints_no_process_and_says_primary_in_json() {
        let text = text(&record(None), false);
        assert!(text.contains("line 29   pass buffer fd"), "{text}");
        assert!(!text.contains("The buffer goes"), "no narrative without --narrate: {text}");
        assert_eq!(json("f.toml", &record(None))["process"], "primary");
    }
}
