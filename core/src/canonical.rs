//! The canonical JSON encoding (DESIGN.md §3): byte for byte what Python's
//! `json.dumps(v, sort_keys=True, separators=(",", ":"))` writes. Keys sorted by
//! code point (which is UTF-8 byte order), no whitespace, and every character
//! outside `' '..='~'` escaped as `\uXXXX` in lowercase hex, with surrogate pairs
//! above U+FFFF.
//!
//! Floats have no canonical form here: `check_numbers` refuses them (and
//! integers beyond 64 bits) before any id is computed, so this writer never
//! meets one from a client.

use serde_json::Value;

use crate::error::TxError;

/// The canonical encoding of `value`.
pub fn to_string(value: &Value) -> String {
    let mut out = String::new();
    write_value(value, &mut out);
    out
}

/// Appends the canonical encoding of `value` to `out`.
pub fn write_value(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        // Integers print as Python prints them; see the module comment on floats.
        Value::Number(number) => out.push_str(&number.to_string()),
        Value::String(text) => write_str(text, out),
        Value::Array(items) => write_seq(items.iter(), out, write_value),
        Value::Object(map) => {
            // Sort here rather than trust the map's order: a dependency turning on
            // serde_json's `preserve_order` would otherwise change every txId.
            // `str` orders by UTF-8 bytes, which is code point order, as Python sorts.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by_key(|(key, _)| *key);
            out.push('{');
            for (position, (key, item)) in entries.into_iter().enumerate() {
                if position > 0 {
                    out.push(',');
                }
                write_str(key, out);
                out.push(':');
                write_value(item, out);
            }
            out.push('}');
        }
    }
}

/// Appends `[a,b,...]`, each item written by `write_item`.
pub fn write_seq<T>(items: impl Iterator<Item = T>, out: &mut String, write_item: impl Fn(T, &mut String)) {
    out.push('[');
    for (position, item) in items.enumerate() {
        if position > 0 {
            out.push(',');
        }
        write_item(item, out);
    }
    out.push(']');
}

/// Appends `text` as a JSON string, escaped as Python's `ensure_ascii` does.
pub fn write_str(text: &str, out: &mut String) {
    out.push('"');
    for character in text.chars() {
        match character {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(character),
            _ => {
                let mut units = [0u16; 2];
                for unit in character.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
}

const TWO_TO_THE_63: f64 = 9_223_372_036_854_775_808.0;

/// Refuses floats and integers beyond 64 bits anywhere in `value` (`path` names it): they have no
/// encoding that every language prints alike. (serde_json reads an integer
/// beyond 64 bits as a float, so a large integral float means "out of range".)
pub fn check_numbers(value: &Value, path: &str) -> Result<(), TxError> {
    match value {
        Value::Number(number) if number.is_f64() => {
            let float = number.as_f64().unwrap_or(f64::NAN);
            let huge_integer = float.fract() == 0.0 && float.abs() >= TWO_TO_THE_63;
            let path = path.to_string();
            Err(if huge_integer { TxError::NumberOutOfRange { path } } else { TxError::FloatNumber { path } })
        }
        Value::Array(items) => {
            items.iter().enumerate().try_for_each(|(index, item)| check_numbers(item, &format!("{path}[{index}]")))
        }
        Value::Object(map) => map.iter().try_for_each(|(key, item)| check_numbers(item, &format!("{path}.{key}"))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn matches_python_json_dumps() {
        // Expected strings from Python 3.11:
        // json.dumps(v, sort_keys=True, separators=(",", ":"))
        let cases = [
            (json!({"b": [1, "é😀\u{7f}\n"], "a": true}), r#"{"a":true,"b":[1,"\u00e9\ud83d\ude00\u007f\n"]}"#),
            (json!({"z": null, "é": {}, "a": []}), r#"{"a":[],"z":null,"\u00e9":{}}"#),
            (
                json!(["\"\\\u{8}\u{c}\t\r\u{1}", -9223372036854775808i64, 18446744073709551615u64]),
                r#"["\"\\\b\f\t\r\u0001",-9223372036854775808,18446744073709551615]"#,
            ),
            (json!("日本 / ~"), r#""\u65e5\u672c / ~""#),
        ];
        for (value, expected) in cases {
            assert_eq!(to_string(&value), expected);
        }
    }

    #[test]
    fn keys_sort_by_code_point_not_utf16() {
        // U+FF61 sorts before U+1F600 by code point, but after it in UTF-16 order.
        let value = json!({"😀": 1, "｡": 2});
        assert_eq!(to_string(&value), r#"{"\uff61":2,"\ud83d\ude00":1}"#);
    }
}
