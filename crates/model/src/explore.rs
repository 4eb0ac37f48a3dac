//! Running a scenario under shuttle's PCT scheduler with fixed seeds.

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use shuttle::scheduler::PctScheduler;
use shuttle::{Config, FailurePersistence, Runner};

use std::sync::Mutex;

use crate::check::{Event, Invariant};
use crate::scenario::{execute, Scenario};
use crate::Bug;

/// How much of the schedule space to sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    /// One PCT run per seed, in order; fixed seeds make a run repeatable.
    pub seeds: Vec<u64>,
    /// Executions per seed.
    pub iterations: usize,
    /// PCT depth: the number of priority change points plus one. Depth `d`
    /// finds, with a probability bounded below, any bug that needs `d - 1`
    /// particular preemptions.
    pub depth: usize,
}

impl Budget {
    /// The budget of the default test run: 4 seeds × 500 executions at
    /// depth 3 (a few seconds per scenario in a debug build), or 16 seeds ×
    /// 5,000 executions with the `long` feature (run it with `--release`).
    pub fn standard() -> Self {
        if cfg!(feature = "long") {
            Self { seeds: (1..=16).collect(), iterations: 5_000, depth: 3 }
        } else {
            Self { seeds: vec![1, 2, 3, 4], iterations: 500, depth: 3 }
        }
    }

    /// Total executions the budget allows.
    pub fn executions(&self) -> usize {
        self.seeds.len() * self.iterations
    }
}

/// A failing execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counterexample {
    /// The seed whose run failed.
    pub seed: u64,
    /// Executions run before and including the failing one, over all seeds.
    pub execution: usize,
    /// The panic message: a violation (`invariant N (...) violated: ...`) or
    /// shuttle's `deadlock! blocked tasks: [...]`.
    pub message: String,
}

impl Counterexample {
    /// The invariant the execution broke, if it broke one.
    pub fn invariant(&self) -> Option<Invariant> {
        Invariant::from_message(&self.message)
    }

    /// Whether shuttle found every thread blocked.
    pub fn is_deadlock(&self) -> bool {
        self.message.starts_with("deadlock")
    }
}

/// What an exploration found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exploration {
    /// Executions run (all of the budget unless one failed).
    pub executions: usize,
    /// The first failing execution, if any.
    pub counterexample: Option<Counterexample>,
    /// Per [`Event`] (by [`Event::index`]), how many passing executions
    /// reached it.
    pub seen: [usize; Event::ALL.len()],
}

impl Exploration {
    /// How many passing executions reached `event`.
    pub fn seen(&self, event: Event) -> usize {
        self.seen[event.index()]
    }
}

/// Runs `scenario` with `bug` under the PCT scheduler, seed by seed, and
/// stops at the first failing execution.
///
/// # Examples
///
/// ```
/// use model::{explore, Budget, Bug, Invariant, Scenario};
///
/// let budget = Budget { seeds: vec![1], iterations: 20, depth: 3 };
/// let clean = explore(Bug::None, Scenario::RevokeVsFault, &budget);
/// assert_eq!(clean.counterexample, None);
/// assert_eq!(clean.executions, 20);
///
/// let broken = explore(Bug::UnrevokeSkipsZap, Scenario::RevokeVsFault, &budget);
/// let found = broken.counterexample.expect("a fault while revoked leaves poison behind");
/// assert_eq!(found.invariant(), Some(Invariant::NoPoisonAfterUnrevoke));
/// ```
pub fn explore(bug: Bug, scenario: Scenario, budget: &Budget) -> Exploration {
    let mut executions = 0;
    let mut seen = [0; Event::ALL.len()];
    for &seed in &budget.seeds {
        // Each seed runs on a fresh OS thread: shuttle keeps thread-local
        // state after a failed run that would taint the next run on the same
        // thread, and a fresh thread keeps every run repeatable on its own.
        let (iterations, depth) = (budget.iterations, budget.depth);
        let run =
            std::thread::spawn(move || run_seed(bug, scenario, seed, iterations, depth)).join().unwrap_or_else(|_| {
                SeedRun { failure: Some("the exploration thread itself panicked".to_owned()), ..SeedRun::default() }
            });
        executions += run.executions;
        for (total, n) in seen.iter_mut().zip(run.seen) {
            *total += n;
        }
        if let Some(message) = run.failure {
            let counterexample = Counterexample { seed, execution: executions, message };
            return Exploration { executions, counterexample: Some(counterexample), seen };
        }
    }
    Exploration { executions, counterexample: None, seen }
}

/// What one seed's run did.
#[derive(Debug, Default)]
struct SeedRun {
    executions: usize,
    seen: [usize; Event::ALL.len()],
    failure: Option<String>,
}

/// One PCT run of `iterations` executions, stopping at a failure.
fn run_seed(bug: Bug, scenario: Scenario, seed: u64, iterations: usize, depth: usize) -> SeedRun {
    let mut config = Config::new();
    // Shuttle's atomics warning does not apply: the model's atomics are
    // SeqCst and their orderings are not what is under test.
    config.silence_warnings = true;
    // A failure of the correct protocol is news: print its schedule so it
    // can be replayed. Failures of the broken ones are expected.
    config.failure_persistence = if bug == Bug::None { FailurePersistence::Print } else { FailurePersistence::None };
    let scheduler = PctScheduler::new_from_seed(seed, depth, iterations);
    let executions = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new([0; Event::ALL.len()]));
    let (counter, tally) = (Arc::clone(&executions), Arc::clone(&seen));
    let run = panic::catch_unwind(AssertUnwindSafe(|| {
        Runner::new(scheduler, config).run(move || {
            counter.fetch_add(1, Ordering::Relaxed);
            let reached = execute(bug, scenario);
            let mut tally = tally.lock().unwrap_or_else(|e| e.into_inner());
            for (total, hit) in tally.iter_mut().zip(reached) {
                *total += usize::from(hit);
            }
        })
    }));
    let failure = run.err().map(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "non-string panic".to_owned())
    });
    let seen = *seen.lock().unwrap_or_else(|e| e.into_inner());
    SeedRun { executions: executions.load(Ordering::Relaxed), seen, failure }
}
