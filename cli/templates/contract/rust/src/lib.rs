//! The `__NAME__` contract: notes of 1 to 280 characters. `write(text)` creates a note
//! holding `text`; `amend(note, text)` consumes a note and creates its new text, which must
//! differ. Made by `shardspace contract new`: make the rules your own, and keep its tests
//! (`tests/contract.rs`) saying what it accepts and why it rejects.

use shardspace_checker::{
    BuildError, CheckerRequest, Contract, Envelope, Object, Rejection, Shape, TransactionBuilder, Verdict, ensure,
};

pub const NAME: &str = "__NAME__";
/// The longest note, in characters.
pub const TEXT_CHARS_MAX: usize = 280;

/// Client side: a call of `write`.
pub fn write(text: &str) -> Result<Envelope, BuildError> {
    Ok(TransactionBuilder::new(NAME, "write").parameter(text).output(text).build()?)
}

/// Client side: a call of `amend`, consuming `note`.
pub fn amend(note: &Object, text: &str) -> Result<Envelope, BuildError> {
    Ok(TransactionBuilder::new(NAME, "amend").input(note).parameter(text).output(text).build()?)
}

/// Server side: the checkers, which every replica asks.
pub fn contract() -> Contract {
    Contract::new(NAME).method("write", check_write).method("amend", check_amend)
}

fn check_write(request: &CheckerRequest) -> Verdict {
    Shape { parameters: 1, outputs: 1, ..Shape::default() }.check(request)?;
    check_note(request)
}

fn check_amend(request: &CheckerRequest) -> Verdict {
    Shape { inputs: 1, parameters: 1, outputs: 1, ..Shape::default() }.check(request)?;
    check_note(request)?;
    ensure!(request.outputs[0] != request.inputs[0], "an amended note must change");
    Ok(())
}

fn check_note(request: &CheckerRequest) -> Verdict {
    let text = request.parameters[0].as_str().ok_or_else(|| Rejection::new("the text must be a string"))?;
    let chars = text.chars().count();
    ensure!((1..=TEXT_CHARS_MAX).contains(&chars), "a note holds 1 to {TEXT_CHARS_MAX} characters");
    ensure!(request.outputs[0] == text, "the note must hold the text given");
    Ok(())
}
