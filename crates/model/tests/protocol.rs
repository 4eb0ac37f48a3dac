//! The model as CI runs it: the correct protocol passes every scenario and
//! reaches the races it is meant to check, and each broken variant of the
//! protocol is caught, by the invariant it breaks or as a deadlock.

use model::{explore, Budget, Bug, Counterexample, Event, Invariant, Scenario};

/// Runs `bug` in `scenario` with the standard budget and returns what was
/// found; fails the test if the model found nothing.
fn caught(bug: Bug, scenario: Scenario) -> Counterexample {
    let found = explore(bug, scenario, &Budget::standard());
    found
        .counterexample
        .unwrap_or_else(|| panic!("{bug} went unnoticed in {scenario} over {} executions", found.executions))
}

fn assert_breaks(bug: Bug, scenario: Scenario, invariant: Invariant) {
    let c = caught(bug, scenario);
    assert_eq!(c.invariant(), Some(invariant), "{bug} in {scenario}: {}", c.message);
}

fn assert_deadlocks(bug: Bug, scenario: Scenario) {
    let c = caught(bug, scenario);
    assert!(c.is_deadlock(), "{bug} in {scenario}: {}", c.message);
}

fn assert_passes(bug: Bug, scenario: Scenario) -> model::Exploration {
    let budget = Budget::standard();
    let found = explore(bug, scenario, &budget);
    assert_eq!(found.counterexample, None, "{bug} in {scenario}");
    assert_eq!(found.executions, budget.executions());
    found
}

// The correct protocol.

#[test]
fn the_correct_protocol_survives_revoke_and_unrevoke_racing_faults_and_an_importer() {
    let found = assert_passes(Bug::None, Scenario::RevokeVsFault);
    // Not vacuous: faults were refused by the re-check, poison was cleared.
    assert!(found.seen(Event::RecheckRefusedFault) > 0);
    assert!(found.seen(Event::UnrevokeClearedPoison) > 0);
}

#[test]
fn the_correct_protocol_survives_close_racing_faults_a_release_and_an_importer() {
    let found = assert_passes(Bug::None, Scenario::CloseVsFault);
    // Both sides of "exactly one of cleanup and release unlinks" happened,
    // and a fault's pin outlived the sever of its buffer.
    assert!(found.seen(Event::CleanupUnlinked) > 0);
    assert!(found.seen(Event::ReleaseUnlinked) > 0);
    assert!(found.seen(Event::PinOutlivedSever) > 0);
    assert!(found.seen(Event::UnbindWaited) > 0);
}

#[test]
fn the_correct_protocol_survives_permanent_revoke_racing_faults_and_memory_toggles() {
    assert_passes(Bug::None, Scenario::PermRevoke);
}

#[test]
fn the_correct_protocol_survives_every_actor_at_once_and_reaches_every_race() {
    let found = assert_passes(Bug::None, Scenario::Everything);
    for &event in Event::CORE {
        assert!(found.seen(event) > 0, "{event:?} never happened in {} executions", found.executions);
    }
}

#[test]
fn the_correct_protocol_survives_pmd_faults_racing_a_split_and_revokes() {
    let found = assert_passes(Bug::None, Scenario::Huge);
    // PMDs were installed and zapped, a split dropped one, and a huge fault
    // after the split fell back to a PTE.
    for event in [Event::PmdInstalled, Event::RevokeZappedPmd, Event::SplitDroppedPmd, Event::HugeFellBackToPte] {
        assert!(found.seen(event) > 0, "{event:?} never happened in {} executions", found.executions);
    }
}

#[test]
fn the_correct_protocol_cuts_off_a_process_that_never_answers_and_restores_the_frame() {
    let found = assert_passes(Bug::None, Scenario::SilentProcess);
    for event in [Event::ProcessCutOff, Event::CutFrameRestored, Event::ClientRecheckZapped] {
        assert!(found.seen(event) > 0, "{event:?} never happened in {} executions", found.executions);
    }
}

#[test]
fn the_correct_protocol_survives_a_process_that_answers_late_or_in_time() {
    let found = assert_passes(Bug::None, Scenario::AnsweringProcess);
    // Answered within the bound in most executions, cut off in some.
    assert!(found.seen(Event::ProcessCutOff) > 0);
    assert!(found.seen(Event::ProcessCutOff) < found.executions);
}

#[test]
fn an_exploration_is_repeatable_from_its_seeds() {
    let budget = Budget { seeds: vec![7, 8], iterations: 40, depth: 3 };
    let first = explore(Bug::None, Scenario::Everything, &budget);
    assert_eq!(first, explore(Bug::None, Scenario::Everything, &budget));
    let broken = explore(Bug::PoisonOutsideLock, Scenario::Everything, &budget);
    assert!(broken.counterexample.is_some());
    assert_eq!(broken, explore(Bug::PoisonOutsideLock, Scenario::Everything, &budget));
}

// Each broken variant, in the scenario that exposes it most directly.

#[test]
fn a_fault_that_skips_the_recheck_maps_a_buffer_cleanup_just_revoked() {
    // In RevokeVsFault the memory-enable check under the same lock hides the
    // missing status re-check (that revoke also disables memory); close
    // revokes in one lock hold and disables memory in the next.
    assert_breaks(Bug::FaultSkipsRecheckUnderMemoryLock, Scenario::CloseVsFault, Invariant::NoPteWhileRevoked);
}

#[test]
fn a_fault_nesting_resv_and_memory_lock_deadlocks_against_revoke() {
    assert_deadlocks(Bug::FaultNestsResvAndMemoryLock, Scenario::RevokeVsFault);
}

#[test]
fn a_fault_without_its_own_registration_uses_a_freed_device() {
    assert_breaks(Bug::FaultSkipsPin, Scenario::CloseVsFault, Invariant::VdevLive);
}

#[test]
fn poisoning_after_dropping_the_lock_leaves_a_marker_after_unrevoke() {
    assert_breaks(Bug::PoisonOutsideLock, Scenario::RevokeVsFault, Invariant::NoPoisonAfterUnrevoke);
}

#[test]
fn zapping_before_publishing_the_revoke_is_harmless_under_memory_lock() {
    // Fault step 5 needs memory_lock, which the revoke holds across both, so
    // the order inside the lock does not matter.
    for scenario in Scenario::ALL {
        assert_passes(Bug::RevokeZapsBeforeSettingStatus, scenario);
    }
}

#[test]
fn unrevoke_zapping_before_publishing_ok_leaves_a_marker() {
    assert_breaks(Bug::UnrevokeZapsBeforeSettingOk, Scenario::RevokeVsFault, Invariant::NoPoisonAfterUnrevoke);
}

#[test]
fn unrevoke_without_a_zap_leaves_the_markers_of_faults_taken_while_revoked() {
    assert_breaks(Bug::UnrevokeSkipsZap, Scenario::RevokeVsFault, Invariant::NoPoisonAfterUnrevoke);
}

#[test]
fn cleanup_without_a_revoke_severs_a_buffer_that_is_still_ok() {
    assert_breaks(Bug::CleanupSkipsRevoke, Scenario::CloseVsFault, Invariant::VdevLive);
}

#[test]
fn cleanup_that_ignores_dying_buffers_races_their_release() {
    // Release read vdev before cleanup severed the buffer: it then unlinks a
    // second time, or, if unbind won the race, uses the freed device.
    let c = caught(Bug::CleanupIgnoresDyingBuffers, Scenario::Everything);
    assert!(matches!(c.invariant(), Some(Invariant::UnlinkedOnce | Invariant::VdevLive)), "{}", c.message);
}

#[test]
fn release_that_unlinks_without_checking_vdev_unlinks_twice_or_uses_a_freed_device() {
    let c = caught(Bug::ReleaseUnlinksWithoutCheck, Scenario::CloseVsFault);
    // Which comes first depends on whether unbind finished before release.
    assert!(matches!(c.invariant(), Some(Invariant::UnlinkedOnce | Invariant::VdevLive)), "{}", c.message);
}

#[test]
fn revoke_without_the_importer_wait_returns_while_an_importer_still_maps() {
    assert_breaks(Bug::NoImporterWait, Scenario::RevokeVsFault, Invariant::ImportersDrained);
}

#[test]
fn an_importer_map_without_the_status_check_maps_a_revoked_buffer() {
    assert_breaks(Bug::ImporterMapsWithoutStatusCheck, Scenario::RevokeVsFault, Invariant::ImportersDrained);
}

#[test]
fn a_status_machine_that_lets_perm_revoked_go_breaks_absorption() {
    assert_breaks(Bug::PermRevokeNotAbsorbing, Scenario::PermRevoke, Invariant::PermRevokedAbsorbing);
}

#[test]
fn permanent_revoke_without_memory_lock_lets_a_fault_map_the_revoked_buffer() {
    assert_breaks(Bug::PermRevokeWithoutMemoryLock, Scenario::PermRevoke, Invariant::NoPteWhileRevoked);
}

#[test]
fn a_zap_that_takes_mmap_lock_deadlocks_against_a_fault_holding_it() {
    assert_deadlocks(Bug::ZapTakesMmapLock, Scenario::RevokeVsFault);
}

#[test]
fn a_pmd_install_that_skips_the_recheck_maps_a_revoked_2_mib() {
    assert_breaks(Bug::PmdInstallSkipsRecheck, Scenario::Huge, Invariant::NoPteWhileRevoked);
}

#[test]
fn a_split_that_keeps_the_pmds_other_page_mapped_races_a_revoke() {
    assert_breaks(Bug::SplitRemapsPmdPages, Scenario::Huge, Invariant::NoPteWhileRevoked);
}

#[test]
fn a_revoke_that_does_not_cut_off_a_silent_process_leaves_it_its_mapping() {
    assert_breaks(Bug::SkipCutOff, Scenario::SilentProcess, Invariant::NoPteWhileRevoked);
}

#[test]
fn an_unrevoke_that_does_not_restore_the_cut_frame_first_leaves_an_ok_buffer_cut() {
    assert_breaks(Bug::SkipRestoreBeforeUnrevoke, Scenario::SilentProcess, Invariant::NoCutFrameForOk);
}

#[test]
fn a_revoke_that_does_not_restore_the_frame_for_an_ok_buffer_leaves_it_cut() {
    assert_breaks(Bug::SkipRestoreAfterRevoke, Scenario::SilentProcess, Invariant::NoCutFrameForOk);
}

#[test]
fn every_harmful_switch_is_caught_when_every_actor_runs() {
    for bug in Bug::ALL {
        if matches!(bug, Bug::None | Bug::RevokeZapsBeforeSettingStatus) || bug.needs_own_scenario() {
            continue;
        }
        let c = caught(bug, Scenario::Everything);
        assert!(c.is_deadlock() || c.invariant().is_some(), "{bug}: {}", c.message);
    }
}
