//! The `__NAME__` contract: what it accepts, and why it rejects (run: cargo test).

use shardspace_checker::{CheckerRequest, Envelope};

fn verdict(envelope: &Envelope) -> Result<(), String> {
    let request = CheckerRequest::from_envelope(envelope).expect("a checker request");
    let contract = __NAME__::contract();
    let verdict = contract.check(&request).expect("a checker for the method");
    verdict.map_err(|rejection| rejection.reason)
}

#[test]
fn a_note_is_written_then_amended() {
    let written = __NAME__::write("a first draft").unwrap();
    assert_eq!(verdict(&written), Ok(()));
    let note = &written.transaction.own_outputs()[0];
    let amended = __NAME__::amend(note, "the final text").unwrap();
    assert_eq!(verdict(&amended), Ok(()));
    assert_eq!(amended.transaction.outputs, ["the final text"]);
}

#[test]
fn notes_out_of_bounds_or_unchanged_are_rejected_with_their_reason() {
    let too_long = "x".repeat(__NAME__::TEXT_CHARS_MAX + 1);
    for (text, reason) in [("", "1 to 280 characters"), (too_long.as_str(), "1 to 280 characters")] {
        let rejected = verdict(&__NAME__::write(text).unwrap()).unwrap_err();
        assert!(rejected.contains(reason), "{rejected}");
    }
    let written = __NAME__::write("same").unwrap();
    let unchanged = __NAME__::amend(&written.transaction.own_outputs()[0], "same").unwrap();
    assert!(verdict(&unchanged).unwrap_err().contains("must change"));
}
