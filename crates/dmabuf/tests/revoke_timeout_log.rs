//! The revoke timeout logs an error naming the buffer and the outstanding count. Alone in
//! its binary so the capturing subscriber sees no other test's events.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{as_importer, export, OnInvalidate, Recorder};
use dmabuf::Status;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// One captured event: its level and its fields rendered as `name=value`.
#[derive(Debug, Clone)]
struct Captured {
    level: Level,
    fields: Vec<String>,
}

/// A minimal subscriber that keeps every event.
#[derive(Debug, Default)]
struct Capture {
    events: Arc<Mutex<Vec<Captured>>>,
}

struct Fields<'a>(&'a mut Vec<String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push(format!("{}={:?}", field.name(), value));
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = Vec::new();
        event.record(&mut Fields(&mut fields));
        self.events.lock().unwrap().push(Captured { level: *event.metadata().level(), fields });
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn revoke_timeout_logs_an_error_naming_the_buffer_and_outstanding_mappings() {
    let capture = Capture::default();
    let events = Arc::clone(&capture.events);
    let (buf, _) = export(Status::Ok);
    let importer = Recorder::new(OnInvalidate::Ignore);
    let attachment = buf.attach(as_importer(&importer)).unwrap();
    let _first = attachment.map().unwrap();
    let _second = attachment.map().unwrap();
    buf.set_revoke_timeout(Some(Duration::from_millis(1)));

    let result = tracing::subscriber::with_default(capture, || buf.set_status(Status::PermRevoked));
    assert_eq!(result.unwrap_err().errno(), rustix::io::Errno::TIMEDOUT);

    let events = events.lock().unwrap();
    let errors: Vec<&Captured> = events.iter().filter(|e| e.level == Level::ERROR).collect();
    assert_eq!(errors.len(), 1, "{events:?}");
    let fields = &errors[0].fields;
    assert!(fields.contains(&format!("buffer={}", buf.id())), "{fields:?}");
    assert!(fields.contains(&"name=test-buffer".to_string()), "{fields:?}");
    assert!(fields.contains(&"outstanding=2".to_string()), "{fields:?}");
}
