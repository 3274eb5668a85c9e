//! Reads a checker request from its JSON body, naming the path of any field
//! that is missing or of the wrong type (`dependencies[0].outputs`).

use serde_json::{Map, Value};
use shardspace_core::{CheckerRequest, TxError};

use crate::error::CheckerError;

/// Parses the body of a checker request. Unknown extra fields are ignored.
pub fn parse_request(body: &[u8]) -> Result<CheckerRequest, CheckerError> {
    from_fields(&parse_object(body)?, "")
}

/// Parses a body that must be one JSON object (a checker request, or a batch of them).
pub(crate) fn parse_object(body: &[u8]) -> Result<Map<String, Value>, CheckerError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|error| CheckerError::MalformedJson { message: error.to_string() })?;
    match value {
        Value::Object(fields) => Ok(fields),
        _ => Err(CheckerError::MalformedJson { message: "the body is JSON but not an object".into() }),
    }
}

/// Reads one checker request already parsed as JSON (an item of a batch).
pub fn request_from_value(value: &Value) -> Result<CheckerRequest, CheckerError> {
    match value {
        Value::Object(fields) => from_fields(fields, ""),
        _ => Err(CheckerError::MalformedJson { message: "the request is JSON but not an object".into() }),
    }
}

fn from_fields(fields: &Map<String, Value>, prefix: &str) -> Result<CheckerRequest, CheckerError> {
    let reader = Fields { fields, prefix };
    let mut request = CheckerRequest {
        contract_id: reader.string("contractID")?,
        method_id: reader.string("methodID")?,
        inputs: reader.strings("inputs")?,
        reference_inputs: reader.strings("referenceInputs")?,
        parameters: reader.parameters()?,
        returns: reader.strings("returns")?,
        outputs: reader.strings("outputs")?,
        dependencies: Vec::new(),
    };
    // A dependency may come without `dependencies` of its own, as Chainspace inlines it.
    let none = Vec::new();
    let dependencies =
        if !prefix.is_empty() && !fields.contains_key("dependencies") { &none } else { reader.list("dependencies")? };
    for (index, dependency) in dependencies.iter().enumerate() {
        let path = format!("{prefix}dependencies[{index}]");
        let Value::Object(fields) = dependency else {
            return Err(CheckerError::WrongType { path, expected: "an object (a checker request)" });
        };
        request.dependencies.push(from_fields(fields, &format!("{path}."))?);
    }
    Ok(request)
}

/// The fields of one request object, and the path that names it in errors.
struct Fields<'a> {
    fields: &'a Map<String, Value>,
    prefix: &'a str,
}

impl Fields<'_> {
    fn get(&self, name: &str) -> Result<&Value, CheckerError> {
        self.fields.get(name).ok_or_else(|| CheckerError::MissingField { path: self.path(name) })
    }

    fn path(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn string(&self, name: &str) -> Result<String, CheckerError> {
        match self.get(name)? {
            Value::String(text) => Ok(text.clone()),
            _ => Err(CheckerError::WrongType { path: self.path(name), expected: "a string" }),
        }
    }

    fn list(&self, name: &str) -> Result<&Vec<Value>, CheckerError> {
        match self.get(name)? {
            Value::Array(items) => Ok(items),
            _ => Err(CheckerError::WrongType { path: self.path(name), expected: "a list" }),
        }
    }

    /// The parameters, refusing numbers the ledger refuses (floats, integers beyond 64 bits).
    fn parameters(&self) -> Result<Vec<Value>, CheckerError> {
        let parameters = self.list("parameters")?;
        for (index, parameter) in parameters.iter().enumerate() {
            let path = format!("{}[{index}]", self.path("parameters"));
            shardspace_core::canonical::check_numbers(parameter, &path).map_err(|error| match error {
                TxError::NumberOutOfRange { path } => CheckerError::NumberOutOfRange { path },
                TxError::FloatNumber { path } => CheckerError::FloatNumber { path },
                _ => CheckerError::FloatNumber { path },
            })?;
        }
        Ok(parameters.clone())
    }

    fn strings(&self, name: &str) -> Result<Vec<String>, CheckerError> {
        let items = self.list(name)?.iter().enumerate().map(|(index, item)| match item {
            Value::String(text) => Ok(text.clone()),
            _ => Err(CheckerError::WrongType { path: format!("{}[{index}]", self.path(name)), expected: "a string" }),
        });
        items.collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Value {
        serde_json::json!({"contractID": "c", "methodID": "m", "inputs": ["i"], "referenceInputs": [],
            "parameters": [1, {"a": null}], "returns": [], "outputs": ["o"], "dependencies": [], "extra": 1})
    }

    #[test]
    fn a_request_parses_and_extra_fields_are_ignored() {
        let parsed = parse_request(request().to_string().as_bytes()).unwrap();
        assert_eq!((parsed.contract_id.as_str(), parsed.inputs.len(), parsed.parameters.len()), ("c", 1, 2));
    }

    #[test]
    fn a_dependency_may_come_without_dependencies_as_chainspace_sends_it_but_the_top_may_not() {
        let mut dependency = request();
        dependency.as_object_mut().unwrap().remove("dependencies");
        let mut outer = request();
        outer["dependencies"] = Value::Array(vec![dependency]);
        let parsed = parse_request(outer.to_string().as_bytes()).unwrap();
        assert!(parsed.dependencies.len() == 1 && parsed.dependencies[0].dependencies.is_empty());
        outer.as_object_mut().unwrap().remove("dependencies");
        let error = parse_request(outer.to_string().as_bytes()).unwrap_err();
        assert_eq!(error, CheckerError::MissingField { path: "dependencies".into() });
    }

    #[test]
    fn errors_name_the_path_inside_dependencies() {
        let mut dependency = request();
        dependency.as_object_mut().unwrap().remove("outputs");
        let mut outer = request();
        outer["dependencies"] = Value::Array(vec![request(), dependency]);
        let error = parse_request(outer.to_string().as_bytes()).unwrap_err();
        assert_eq!(error, CheckerError::MissingField { path: "dependencies[1].outputs".into() });

        outer["dependencies"] = serde_json::json!([request()]);
        outer["dependencies"][0]["inputs"] = serde_json::json!([1]);
        let error = parse_request(outer.to_string().as_bytes()).unwrap_err();
        assert_eq!(error.kind(), "wrong_type");
        assert!(error.to_string().contains("dependencies[0].inputs[0]"), "{error}");
    }

    #[test]
    fn floats_and_huge_integers_in_parameters_are_refused() {
        let mut request = request();
        request["parameters"] = serde_json::from_str("[1, {\"x\": 1.5}]").unwrap();
        let error = parse_request(request.to_string().as_bytes()).unwrap_err();
        assert_eq!(error, CheckerError::FloatNumber { path: "parameters[1].x".into() });
        let body = request.to_string().replace("1.5", "18446744073709551616");
        assert_eq!(parse_request(body.as_bytes()).unwrap_err().kind(), "number_out_of_range");
        let body = request.to_string().replace("1.5", "-0");
        assert_eq!(parse_request(body.as_bytes()).unwrap_err().kind(), "float_number");
    }

    #[test]
    fn non_objects_and_bad_json_are_malformed() {
        for body in [&b"[]"[..], b"{", b"\xff"] {
            assert_eq!(parse_request(body).unwrap_err().kind(), "malformed_json");
        }
    }
}
