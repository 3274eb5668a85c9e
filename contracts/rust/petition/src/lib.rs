//! `petition`: a petition collects signatures, each of which consumes a token
//! (the right to sign once); `tally` reads the petition as a reference.
//! See `docs/checkers.md` §3.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};
use shardspace_checker::{
    BuildError, CheckerRequest, Contract, Envelope, Object, Rejection, Shape, TransactionBuilder, Verdict, canonical,
    ensure, integer, parse_canonical, require_keys,
};

pub const NAME: &str = "petition";
pub const OPTIONS_MIN: usize = 2;
pub const OPTIONS_MAX: usize = 10;
pub const TOKENS_MAX: i64 = 100;

/// A petition's fields, as its value holds them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Petition {
    pub options: Vec<String>,
    pub tally: Vec<i64>,
    pub title: String,
    pub uid: String,
}

impl Petition {
    pub fn to_value(&self) -> String {
        canonical::to_string(
            &json!({"options": self.options, "tally": self.tally, "title": self.title, "uid": self.uid}),
        )
    }

    /// Reads a petition value, rejecting anything that `create` could not have made.
    pub fn parse(value: &str) -> Result<Self, Rejection> {
        let value = parse_canonical(value, "the petition")?;
        require_keys(&value, &["options", "tally", "title", "uid"], "the petition")?;
        let options = strings(&value["options"], "the petition's options")?;
        let (uid, title) = (non_empty(&value["uid"], "the uid")?, non_empty(&value["title"], "the title")?);
        check_header(&options)?;
        let tally = value["tally"].as_array().ok_or_else(|| Rejection::new("the petition's tally is not a list"))?;
        let tally: Vec<i64> = tally.iter().map(|count| integer(count, "a count")).collect::<Result<_, _>>()?;
        ensure!(
            tally.len() == options.len() && tally.iter().all(|&count| count >= 0),
            "the tally is not one count >= 0 per option"
        );
        total(&tally)?;
        Ok(Self { options, tally, title: title.into(), uid: uid.into() })
    }
}

fn token_value(uid: &str, index: i64) -> String {
    canonical::to_string(&json!({"index": index, "petition": uid}))
}

/// Client side: a new petition and `tokens` tokens to sign it with.
pub fn create(uid: &str, title: &str, options: &[&str], tokens: i64) -> Result<Envelope, BuildError> {
    let petition = Petition {
        options: options.iter().map(|option| option.to_string()).collect(),
        tally: vec![0; options.len()],
        title: title.into(),
        uid: uid.into(),
    };
    let mut builder = TransactionBuilder::new(NAME, "create")
        .parameter(uid)
        .parameter(title)
        .parameter(json!(options))
        .parameter(tokens);
    builder = builder.output(petition.to_value());
    for index in 0..tokens.min(TOKENS_MAX + 1) {
        builder = builder.output(token_value(uid, index));
    }
    Ok(builder.build()?)
}

/// Client side: signs `petition` for `option`, consuming `token`.
pub fn sign(petition: &Object, token: &Object, option: usize) -> Result<Envelope, BuildError> {
    let mut signed = Petition::parse(&petition.value)?;
    let count = signed.tally.get_mut(option).ok_or_else(|| Rejection::new(format!("no option {option}")))?;
    *count += 1;
    let builder = TransactionBuilder::new(NAME, "sign").input(petition).input(token).parameter(option);
    Ok(builder.output(signed.to_value()).build()?)
}

/// Client side: reads the results of `petition`.
pub fn tally(petition: &Object) -> Result<Envelope, BuildError> {
    let results = results(&Petition::parse(&petition.value)?)?;
    Ok(TransactionBuilder::new(NAME, "tally").reference(petition).returns(results).build()?)
}

/// Server side: the checkers.
pub fn contract() -> Contract {
    Contract::new(NAME).method("create", check_create).method("sign", check_sign).method("tally", check_tally)
}

fn check_create(request: &CheckerRequest) -> Verdict {
    let [uid, title, options, tokens] = &request.parameters[..] else {
        return Err(Rejection::new(format!("expected 4 parameters, got {}", request.parameters.len())));
    };
    let (uid, title) = (non_empty(uid, "the uid")?, non_empty(title, "the title")?);
    let options = strings(options, "the options")?;
    check_header(&options)?;
    let tokens = integer(tokens, "tokens")?;
    ensure!((1..=TOKENS_MAX).contains(&tokens), "tokens is {tokens}, not 1 to {TOKENS_MAX}");
    let outputs = usize::try_from(tokens).map_err(|_| Rejection::new("tokens is out of range"))? + 1;
    Shape { parameters: 4, outputs, ..Shape::default() }.check(request)?;
    let petition = Petition { tally: vec![0; options.len()], options, title: title.into(), uid: uid.into() };
    ensure!(request.outputs[0] == petition.to_value(), "output 0 is not the new petition");
    for (index, token) in (0..tokens).zip(&request.outputs[1..]) {
        ensure!(*token == token_value(uid, index), "output {} is not token {index}", index + 1);
    }
    Ok(())
}

fn check_sign(request: &CheckerRequest) -> Verdict {
    Shape { inputs: 2, parameters: 1, outputs: 1, ..Shape::default() }.check(request)?;
    let mut petition = Petition::parse(&request.inputs[0])?;
    let token = parse_canonical(&request.inputs[1], "the token")?;
    require_keys(&token, &["index", "petition"], "the token")?;
    ensure!(integer(&token["index"], "the token's index")? >= 0, "the token's index is negative");
    ensure!(token["petition"].as_str() == Some(petition.uid.as_str()), "the token is not for this petition");
    let option = integer(&request.parameters[0], "the option")?;
    let index = usize::try_from(option).ok().filter(|&i| i < petition.options.len());
    let index = index.ok_or_else(|| Rejection::new(format!("option {option} is not an option of this petition")))?;
    petition.tally[index] =
        petition.tally[index].checked_add(1).ok_or_else(|| Rejection::new("the tally overflows"))?;
    total(&petition.tally)?;
    ensure!(
        request.outputs[0] == petition.to_value(),
        "the output is not the petition with one more vote for option {index}"
    );
    Ok(())
}

fn check_tally(request: &CheckerRequest) -> Verdict {
    Shape { references: 1, returns: 1, ..Shape::default() }.check(request)?;
    let petition = Petition::parse(&request.reference_inputs[0])?;
    ensure!(request.returns[0] == results(&petition)?, "the returned results are not the petition's");
    Ok(())
}

/// `{"results": {option: count}, "total": sum}` as canonical JSON.
fn results(petition: &Petition) -> Result<String, Rejection> {
    let counts: Map<String, Value> =
        petition.options.iter().cloned().zip(petition.tally.iter().map(|&c| json!(c))).collect();
    Ok(canonical::to_string(&json!({"results": counts, "total": total(&petition.tally)?})))
}

/// The sum of a tally, which `tally` returns: it must fit a signed 64-bit integer.
fn total(tally: &[i64]) -> Result<i64, Rejection> {
    let sum = tally.iter().try_fold(0i64, |sum, &count| sum.checked_add(count));
    sum.ok_or_else(|| Rejection::new("the petition's total overflows 2^63-1"))
}

/// 2 to 10 distinct, non-empty options.
fn check_header(options: &[String]) -> Verdict {
    ensure!(
        (OPTIONS_MIN..=OPTIONS_MAX).contains(&options.len()),
        "a petition has {OPTIONS_MIN} to {OPTIONS_MAX} options"
    );
    ensure!(options.iter().all(|option| !option.is_empty()), "an option is empty");
    ensure!(options.iter().collect::<BTreeSet<_>>().len() == options.len(), "the options are not distinct");
    Ok(())
}

fn strings(value: &Value, what: &str) -> Result<Vec<String>, Rejection> {
    let items = value.as_array().ok_or_else(|| Rejection::new(format!("{what} is not a list")))?;
    let text = |item: &Value| {
        item.as_str().map(String::from).ok_or_else(|| Rejection::new(format!("{what} holds a non-string")))
    };
    items.iter().map(text).collect()
}

fn non_empty<'a>(value: &'a Value, what: &str) -> Result<&'a str, Rejection> {
    value
        .as_str()
        .filter(|text| !text.is_empty())
        .ok_or_else(|| Rejection::new(format!("{what} is not a non-empty string")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(envelope: &Envelope) -> Verdict {
        contract().check(&CheckerRequest::from_envelope(envelope).unwrap()).unwrap()
    }

    fn created(uid: &str) -> Vec<Object> {
        create(uid, "Lunch", &["pizza", "sushi"], 2).unwrap().transaction.own_outputs()
    }

    #[test]
    fn create_sign_and_tally_are_accepted() {
        assert_eq!(verdict(&create("p1", "Lunch", &["pizza", "sushi"], 2).unwrap()), Ok(()));
        let objects = created("p1");
        let signed = sign(&objects[0], &objects[1], 1).unwrap();
        assert_eq!(verdict(&signed), Ok(()));
        let petition = signed.transaction.own_outputs().remove(0);
        let counted = tally(&petition).unwrap();
        assert_eq!(counted.transaction.returns, vec![r#"{"results":{"pizza":0,"sushi":1},"total":1}"#]);
        assert_eq!(verdict(&counted), Ok(()));
    }

    #[test]
    fn bad_petitions_tokens_options_and_tallies_are_rejected() {
        assert!(verdict(&create("p1", "Lunch", &["pizza"], 2).unwrap()).is_err());
        assert!(verdict(&create("p1", "Lunch", &["pizza", "pizza"], 2).unwrap()).is_err());
        assert!(verdict(&create("p1", "Lunch", &["a", "b"], TOKENS_MAX + 1).unwrap()).is_err());
        assert!(verdict(&create("", "Lunch", &["a", "b"], 1).unwrap()).is_err());
        let (mine, other) = (created("p1"), created("p2"));
        assert!(verdict(&sign(&mine[0], &other[1], 0).unwrap()).is_err(), "token of another petition");
        let mut out_of_range = sign(&mine[0], &mine[1], 0).unwrap();
        out_of_range.transaction.parameters[0] = json!(2);
        assert!(verdict(&out_of_range).is_err(), "option out of range");
        let mut wrong = tally(&mine[0]).unwrap();
        wrong.transaction.returns[0] = r#"{"results":{"pizza":5,"sushi":0},"total":5}"#.into();
        assert!(verdict(&wrong).is_err());
    }

    #[test]
    fn a_total_beyond_64_bits_is_rejected_not_wrapped() {
        let huge = Petition {
            options: vec!["a".into(), "b".into()],
            tally: vec![i64::MAX, 1],
            title: "t".into(),
            uid: "u".into(),
        };
        assert!(Petition::parse(&huge.to_value()).is_err());
    }

    #[test]
    fn the_client_refuses_what_it_cannot_build() {
        let objects = created("p1");
        assert!(matches!(sign(&objects[0], &objects[1], 5), Err(BuildError::Input(_))));
        assert!(matches!(tally(&objects[1]), Err(BuildError::Input(_))));
    }
}
