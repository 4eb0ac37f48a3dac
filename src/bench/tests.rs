use super::*;

fn stat(samples: &[f64]) -> Stat {
    Stat::new("ns/access", samples.to_vec())
}

/// Rows covering each target kind, met and missed, and no target.
fn synthetic() -> Vec<Row> {
    vec![
        row(
            7,
            "at most, met".into(),
            stat(&[3.0, 1.0, 2.0]),
            stat(&[2.0]),
            "floor",
            "ours / baseline",
            Some(Target::AtMost(1.5)),
        ),
        row(
            7,
            "at most, missed".into(),
            stat(&[4.0]),
            stat(&[2.0]),
            "floor",
            "ours / baseline",
            Some(Target::AtMost(1.5)),
        ),
        row(
            4,
            "at least, met".into(),
            stat(&[1.0]),
            stat(&[1.0]),
            "plain",
            "ours / baseline",
            Some(Target::AtLeast(0.97)),
        ),
        row(
            1,
            "at least, missed".into(),
            stat(&[2.0]),
            stat(&[4.0]),
            "kernel",
            "baseline / ours",
            Some(Target::AtLeast(3.0)),
        ),
        row(7, "informative".into(), stat(&[5.0]), stat(&[1.0]), "pread", "ours / baseline", None),
        row(7, "no samples".into(), stat(&[]), stat(&[1.0]), "pread", "ours / baseline", None),
    ]
}

/// Each record as the CLI prints it (one line), parsed back.
fn printed(rows: &[Row]) -> Vec<serde_json::Value> {
    json_rows(rows)
        .iter()
        .map(|v| {
            let line = v.to_string();
            assert!(!line.contains('\n'), "a record must fit one line: {line}");
            serde_json::from_str(&line).unwrap()
        })
        .collect()
}

#[test]
fn every_json_record_carries_the_checked_keys() {
    let records = printed(&synthetic());
    assert_eq!(records.len(), 6);
    for r in &records {
        for key in ["section", "section_name", "measurement", "unit", "ours", "baseline", "ratio", "target", "met"] {
            assert!(r.get(key).is_some(), "{key} missing from {r}");
        }
    }
    let first = &records[0];
    assert_eq!(first["section"], 7);
    assert_eq!(first["section_name"], "register access");
    assert_eq!(first["measurement"], "at most, met");
    assert_eq!(first["unit"], "ns/access");
    assert_eq!(first["ours"], 2.0, "ours is the median");
    assert_eq!(first["baseline"], 2.0);
    assert_eq!(first["ratio"], 1.0);
    assert_eq!(first["target"], serde_json::json!({"op": "<=", "value": 1.5}));
    assert_eq!(first["ours_samples"], serde_json::json!([1.0, 2.0, 3.0]));
    assert_eq!(records[2]["target"], serde_json::json!({"op": ">=", "value": 0.97}));
}

#[test]
fn met_is_true_false_or_null() {
    let met: Vec<serde_json::Value> = printed(&synthetic()).into_iter().map(|r| r["met"].clone()).collect();
    let expected =
        [true.into(), false.into(), true.into(), false.into(), serde_json::Value::Null, serde_json::Value::Null];
    assert_eq!(met, expected);
    let records = printed(&synthetic());
    assert!(records[4]["target"].is_null(), "no target is null, not absent");
    // The ratio is formed as the row says: baseline / ours = 4 / 2.
    assert_eq!(records[3]["ratio"], 2.0);
}

#[test]
fn a_median_without_samples_is_null_not_a_string() {
    let records = printed(&synthetic());
    assert!(records[5]["ours"].is_null());
    assert!(records[5]["ratio"].is_null());
}
