//! Prints, for every bug switch and scenario, what the checker finds and
//! after how many executions: `cargo run --release -p model --example survey`.
//! Optional arguments: executions per seed (default 2,000), then a filter
//! on the bug's name, which also prints each finding in full.

use std::time::Instant;

use model::{explore, Budget, Bug, Event, Scenario};

fn main() {
    let iterations = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(2_000);
    let filter = std::env::args().nth(2);
    let budget = Budget { seeds: vec![1, 2, 3, 4], iterations, depth: 3 };
    // Expected failures panic inside shuttle; keep their messages off the table.
    std::panic::set_hook(Box::new(|_| {}));
    println!("{:<36} {:<14} {:>10} {:>9}  finding", "bug", "scenario", "executions", "time");
    for bug in Bug::ALL.into_iter().filter(|b| filter.as_ref().is_none_or(|f| b.to_string().contains(f.as_str()))) {
        for scenario in Scenario::ALL {
            let start = Instant::now();
            let found = explore(bug, scenario, &budget);
            let finding = match &found.counterexample {
                // For the correct protocol, say how often each race was reached.
                None if bug == Bug::None => {
                    Event::ALL.iter().map(|e| format!("{e:?} {}", found.seen(*e))).collect::<Vec<_>>().join(", ")
                }
                None => "nothing".to_owned(),
                Some(c) if filter.is_some() => format!("seed {}: {}", c.seed, c.message),
                Some(c) => format!("seed {}: {}", c.seed, c.message.lines().next().unwrap_or("")),
            };
            println!(
                "{:<36} {:<14} {:>10} {:>8.2}s  {}",
                bug.to_string(),
                scenario.to_string(),
                found.executions,
                start.elapsed().as_secs_f64(),
                finding
            );
        }
    }
}
