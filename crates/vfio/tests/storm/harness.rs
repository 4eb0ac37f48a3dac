//! Running the threads under the watchdog, and the quiet epilogue.

use super::*;

pub type Outcome = Result<Option<HashMap<u64, u64>>, String>;

pub fn spawn_all(storm: &Arc<Storm>) -> (Vec<thread::JoinHandle<()>>, mpsc::Receiver<(usize, Outcome)>) {
    let (tx, rx) = mpsc::channel();
    let mut handles = Vec::new();
    for i in 0..storm.progress.len() {
        let storm = storm.clone();
        let tx = tx.clone();
        let handle = thread::Builder::new()
            .name(storm.progress[i].name.clone())
            .spawn(move || {
                let me = &storm.progress[i];
                let body = || -> Outcome {
                    match i {
                        0 => toggler(&storm, me).map(|()| None),
                        1 => resetter(&storm, me).map(|()| None),
                        2 => {
                            let rng = Rng::new(storm.seed ^ 0x6578_706f);
                            Exporter { storm: &storm, me, rng, cursor: CHURN_START, reg_cursor: REG_CHURN_START }
                                .run()
                                .map(|()| None)
                        }
                        3 => revoker(&storm, me).map(|()| None),
                        i if i >= DRIVERS + ACCESSORS => {
                            importer(&storm, me, (i - DRIVERS - ACCESSORS) as u64).map(|()| None)
                        }
                        _ => {
                            let index = (i - DRIVERS) as u64;
                            let rng = Rng::new(storm.seed ^ ((index + 1) << 20));
                            let a = Accessor {
                                storm: &storm,
                                me,
                                index,
                                rng,
                                last: HashMap::new(),
                                next_value: index << 48,
                            };
                            Ok(Some(a.run()))
                        }
                    }
                };
                let outcome = panic::catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|p| {
                    let msg =
                        p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
                    Err(format!("panicked: {}", msg.unwrap_or_default()))
                });
                if outcome.is_err() {
                    storm.abort.store(true, SeqCst);
                }
                me.doing("finished");
                let _ = tx.send((i, outcome));
            })
            .unwrap();
        handles.push(handle);
    }
    (handles, rx)
}

/// Waits for every thread; fails if one makes no progress for [`STALL`].
pub fn watch(storm: &Storm, rx: &mpsc::Receiver<(usize, Outcome)>) -> Vec<Outcome> {
    let n = storm.progress.len();
    let mut outcomes: Vec<Option<Outcome>> = (0..n).map(|_| None).collect();
    let mut last_steps = vec![u64::MAX; n];
    let mut last_change = vec![Instant::now(); n];
    while outcomes.iter().any(Option::is_none) {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok((i, outcome)) => outcomes[i] = Some(outcome),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => unreachable!("every thread reports once"),
        }
        // The four drivers done: accessors may stop (importers stop on
        // their own, after their cycles).
        if outcomes[..DRIVERS].iter().all(Option::is_some) {
            storm.stop.store(true, SeqCst);
        }
        for i in (0..n).filter(|&i| outcomes[i].is_none()) {
            let steps = storm.progress[i].steps.load(SeqCst);
            if steps != last_steps[i] {
                last_steps[i] = steps;
                last_change[i] = Instant::now();
            } else if last_change[i].elapsed() > STALL {
                let report: Vec<String> = storm
                    .progress
                    .iter()
                    .enumerate()
                    .map(|(j, p)| {
                        format!(
                            "  {}: {} after {} steps, last address {:#x}{}",
                            p.name,
                            p.doing.lock().unwrap_or_else(|e| e.into_inner()),
                            p.steps.load(SeqCst),
                            p.addr.load(SeqCst),
                            if outcomes[j].is_some() { " (finished)" } else { "" }
                        )
                    })
                    .collect();
                // The threads keep the storm (and its address space) alive:
                // nothing here waits for them.
                panic!(
                    "{} made no progress for {STALL:?}: hang\n{}\nseq={} {}\nfault stats {:?}",
                    storm.progress[i].name,
                    report.join("\n"),
                    storm.seq.load(SeqCst),
                    storm.counts.summary(),
                    storm.aspace.fault_stats()
                );
            }
        }
    }
    outcomes.into_iter().map(Option::unwrap).collect()
}

/// After the storm, with memory on: every word reads back its last value
/// through every live mapping (or SIGBUS for a permanently revoked buffer),
/// and through the device fd.
pub fn verify_data(storm: &Storm, last: &[HashMap<u64, u64>]) -> usize {
    assert!(storm.vdev.memory_enabled(), "the toggler ends with memory on");
    let mut checked = 0;
    for slot in &storm.slots {
        let guard = slot.read();
        let Some(m) = guard.as_ref() else { continue };
        for (page, p) in m.pages.iter().enumerate().filter(|(_, p)| !p.hole.load(SeqCst)) {
            for (a, words) in last.iter().enumerate() {
                let off = a as u64 * WORD_STRIDE;
                let va = m.va + page as u64 * PAGE + off;
                let r = probe::read_u64(va);
                if m.buf.perm.load(SeqCst) {
                    let e = r.expect_err("a permanently revoked buffer stays revoked");
                    assert!(e.is_sigbus() && e.code == libc::BUS_ADRERR, "{} page {page}: {e}", m.label);
                } else {
                    let want = words.get(&(p.bar + off)).copied().unwrap_or(0);
                    assert_eq!(r, Ok(want), "{} page {page} word of accessor {a} after the storm", m.label);
                }
                checked += 1;
            }
        }
    }
    for words in last {
        for (&bar, &want) in words {
            let mut b = [0u8; 8];
            storm.fd.read(BAR1 + bar, &mut b).unwrap();
            assert_eq!(u64::from_ne_bytes(b), want, "BAR1 {bar:#x} through the device fd");
            checked += 1;
        }
    }
    checked
}

/// Every word of every live mapping raises SIGBUS `BUS_ADRERR`.
pub fn assert_all_revoked(storm: &Storm, when: &str) -> usize {
    let mut checked = 0;
    for slot in storm.slots.iter().chain(&storm.reg_slots) {
        let guard = slot.read();
        let Some(m) = guard.as_ref() else { continue };
        for (page, _) in m.pages.iter().enumerate().filter(|(_, p)| !p.hole.load(SeqCst)) {
            for a in 0..ACCESSORS as u64 {
                let va = m.va + page as u64 * PAGE + a * WORD_STRIDE;
                let e = probe::read_u64(va).expect_err(when);
                assert!(e.is_sigbus() && e.code == libc::BUS_ADRERR && e.addr == va, "{} page {page}: {e}", m.label);
                checked += 1;
            }
        }
    }
    checked
}

/// The quiet epilogue: with nothing else running, each event must have its
/// whole effect on every page. Memory off revokes everything; memory on
/// brings back every page not permanently revoked, with its data (the pages
/// just touched carry SIGBUS markers, which the un-revoke must clear); a
/// reset and an FLR with memory on leave everything usable.
pub fn epilogue(storm: &Storm, last: &[HashMap<u64, u64>]) -> usize {
    let verify = || verify_data(storm, last) + verify_registers(storm);
    let mut checked = verify();
    storm.fd.set_memory_enable(false).unwrap();
    checked += assert_all_revoked(storm, "memory is off after the storm");
    storm.fd.set_memory_enable(true).unwrap();
    checked += verify();
    storm.fd.reset().unwrap();
    checked += verify();
    storm.fd.flr().unwrap();
    checked + verify()
}

/// Unmaps every mapping and closes every buffer fd.
pub fn tear_down(storm: &Storm) {
    for slot in storm.slots.iter().chain(&storm.reg_slots) {
        if let Some(m) = slot.write().take() {
            m.unmapping.store(true, SeqCst);
            storm.aspace.munmap(m.va, m.len()).unwrap();
        }
    }
    let pool = std::mem::take(&mut *storm.pool());
    drop(pool);
    let pool = std::mem::take(&mut *storm.reg_pool());
    drop(pool);
}
