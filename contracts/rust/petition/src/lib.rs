//! `petition`: a petition collects signatures, each of which consumes a token
//! (the right to sign once); `tally` reads the petition as a reference.

use serde_json::{Map, Value, json};
use shardspace_checker::{
    CheckerRequest, Contract, Envelope, Object, Rejection, Shape, TransactionBuilder, TxError, Verdict, canonical,
    ensure, parse_canonical,
};

pub const NAME: &str = "petition";
pub const OPTIONS_MIN: usize = 2;
pub const OPTIONS_MAX: usize = 10;
pub const TOKENS_MAX: i64 = 100;

/// Client side: a new petition and `tokens` tokens to sign it with.
pub fn create(uid: &str, title: &str, options: &[&str], tokens: i64) -> Result<Envelope, TxError> {
    let petition = json!({"options": options, "tally": vec![0; options.len()], "title": title, "uid": uid});
    let mut builder = TransactionBuilder::new(NAME, "create")
        .parameter(uid)
        .parameter(title)
        .parameter(json!(options))
        .parameter(tokens)
        .output(canonical::to_string(&petition));
    for index in 0..tokens {
        builder = builder.output(canonical::to_string(&json!({"index": index, "petition": uid})));
    }
    builder.build()
}

/// Client side: signs `petition` for `option`, consuming `token`.
pub fn sign(petition: &Object, token: &Object, option: usize) -> Result<Envelope, TxError> {
    let mut updated: Value = serde_json::from_str(&petition.value).unwrap_or_default();
    if let Some(count) = updated.get_mut("tally").and_then(|tally| tally.get_mut(option)) {
        *count = json!(count.as_i64().unwrap_or_default() + 1);
    }
    let builder = TransactionBuilder::new(NAME, "sign").input(petition).input(token).parameter(option);
    builder.output(canonical::to_string(&updated)).build()
}

/// Client side: reads the results of `petition`.
pub fn tally(petition: &Object) -> Result<Envelope, TxError> {
    let results = parse_petition(&petition.value).map(|p| results(&p)).unwrap_or_default();
    TransactionBuilder::new(NAME, "tally").reference(petition).returns(results).build()
}

/// Server side: the checkers.
pub fn contract() -> Contract {
    Contract::new(NAME).method("create", check_create).method("sign", check_sign).method("tally", check_tally)
}

/// A petition's fields, read from its value.
struct Petition {
    options: Vec<String>,
    tally: Vec<i64>,
    title: String,
    uid: String,
}

impl Petition {
    fn to_value(&self) -> String {
        canonical::to_string(
            &json!({"options": self.options, "tally": self.tally, "title": self.title, "uid": self.uid}),
        )
    }
}

fn check_create(request: &CheckerRequest) -> Verdict {
    let [uid, title, options, tokens] = &request.parameters[..] else {
        return Err(Rejection::new(format!("expected 4 parameters, got {}", request.parameters.len())));
    };
    let (uid, title) = (non_empty(uid, "uid")?, non_empty(title, "title")?);
    let options = options.as_array().ok_or_else(|| Rejection::new("options is not a list"))?;
    let options: Vec<String> =
        options.iter().map(|o| non_empty(o, "an option").map(String::from)).collect::<Result<_, _>>()?;
    ensure!(
        (OPTIONS_MIN..=OPTIONS_MAX).contains(&options.len()),
        "a petition has {OPTIONS_MIN} to {OPTIONS_MAX} options"
    );
    let distinct: std::collections::BTreeSet<&String> = options.iter().collect();
    ensure!(distinct.len() == options.len(), "the options are not distinct");
    let tokens = integer(tokens, "tokens")?;
    ensure!((1..=TOKENS_MAX).contains(&tokens), "tokens is {tokens}, not 1 to {TOKENS_MAX}");
    let outputs = usize::try_from(tokens).map_err(|_| Rejection::new("tokens is out of range"))? + 1;
    Shape { parameters: 4, outputs, ..Shape::default() }.check(request)?;
    let petition = Petition { tally: vec![0; options.len()], options, title: title.into(), uid: uid.into() };
    ensure!(request.outputs[0] == petition.to_value(), "output 0 is not the new petition");
    for (index, token) in request.outputs[1..].iter().enumerate() {
        ensure!(
            *token == canonical::to_string(&json!({"index": index, "petition": uid})),
            "output {} is not token {index}",
            index + 1
        );
    }
    Ok(())
}

fn check_sign(request: &CheckerRequest) -> Verdict {
    Shape { inputs: 2, parameters: 1, outputs: 1, ..Shape::default() }.check(request)?;
    let mut petition = parse_petition(&request.inputs[0])?;
    let token = parse_canonical(&request.inputs[1], "the token")?;
    ensure!(has_keys(&token, &["index", "petition"]), "the token is not {{index, petition}}");
    ensure!(token["petition"].as_str() == Some(petition.uid.as_str()), "the token is not for this petition");
    let option = integer(&request.parameters[0], "the option")?;
    let index = usize::try_from(option).ok().filter(|&i| i < petition.options.len());
    let index = index.ok_or_else(|| Rejection::new(format!("option {option} is not an option of this petition")))?;
    petition.tally[index] =
        petition.tally[index].checked_add(1).ok_or_else(|| Rejection::new("the tally overflows"))?;
    ensure!(
        request.outputs[0] == petition.to_value(),
        "the output is not the petition with one more vote for option {index}"
    );
    Ok(())
}

fn check_tally(request: &CheckerRequest) -> Verdict {
    Shape { references: 1, returns: 1, ..Shape::default() }.check(request)?;
    let petition = parse_petition(&request.reference_inputs[0])?;
    ensure!(request.returns[0] == results(&petition), "the returned results are not the petition's");
    Ok(())
}

/// `{"results": {option: count}, "total": sum}` as canonical JSON.
fn results(petition: &Petition) -> String {
    let counts: Map<String, Value> =
        petition.options.iter().cloned().zip(petition.tally.iter().map(|&c| json!(c))).collect();
    canonical::to_string(&json!({"results": counts, "total": petition.tally.iter().sum::<i64>()}))
}

fn parse_petition(value: &str) -> Result<Petition, Rejection> {
    let value = parse_canonical(value, "the petition")?;
    let bad = || Rejection::new("the petition is not {options, tally, title, uid}");
    if !has_keys(&value, &["options", "tally", "title", "uid"]) {
        return Err(bad());
    }
    let strings = |field: &str| -> Result<Vec<String>, Rejection> {
        let items = value[field].as_array().ok_or_else(bad)?;
        items.iter().map(|item| item.as_str().map(String::from).ok_or_else(bad)).collect()
    };
    let tally = value["tally"].as_array().ok_or_else(bad)?;
    let tally: Vec<i64> = tally.iter().map(|count| count.as_i64().ok_or_else(bad)).collect::<Result<_, _>>()?;
    let options = strings("options")?;
    ensure!(tally.len() == options.len(), "the petition's tally and options differ in length");
    let text = |field: &str| value[field].as_str().map(String::from).ok_or_else(bad);
    Ok(Petition { options, tally, title: text("title")?, uid: text("uid")? })
}

/// Whether `value` is an object with exactly `keys` (in sorted order).
fn has_keys(value: &Value, keys: &[&str]) -> bool {
    value.as_object().is_some_and(|map| map.keys().map(String::as_str).eq(keys.iter().copied()))
}

fn non_empty<'a>(value: &'a Value, what: &str) -> Result<&'a str, Rejection> {
    value
        .as_str()
        .filter(|text| !text.is_empty())
        .ok_or_else(|| Rejection::new(format!("{what} is not a non-empty string")))
}

fn integer(value: &Value, what: &str) -> Result<i64, Rejection> {
    value.as_i64().ok_or_else(|| Rejection::new(format!("{what} is not an integer")))
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
        let (mine, other) = (created("p1"), created("p2"));
        assert!(verdict(&sign(&mine[0], &other[1], 0).unwrap()).is_err(), "token of another petition");
        assert!(verdict(&sign(&mine[0], &mine[1], 2).unwrap()).is_err(), "option out of range");
        let mut wrong = tally(&mine[0]).unwrap();
        wrong.transaction.returns[0] = r#"{"results":{"pizza":5,"sushi":0},"total":5}"#.into();
        assert!(verdict(&wrong).is_err());
    }
}
