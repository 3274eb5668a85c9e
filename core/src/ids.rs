//! Id newtypes: `TxId` and `ObjectId` (SHA-256 digests, written as 64 lowercase
//! hex digits on the wire) and `ShardId`. `Display` is short (`tx:3fa1c2…`),
//! `Debug` shows the whole id.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// Bytes in a digest id.
pub const DIGEST_BYTES: usize = 32;

/// Hex digits of a digest shown by `Display`.
const DISPLAY_HEX_DIGITS: usize = 6;

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; DIGEST_BYTES] {
    Sha256::digest(bytes).into()
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha256(bytes))
}

/// Why a text is not a digest id.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("bad id {text:?}: an id is {} lowercase hex digits", DIGEST_BYTES * 2)]
pub struct BadId {
    pub text: String,
}

fn parse_digest(text: &str) -> Result<[u8; DIGEST_BYTES], BadId> {
    let lowercase_hex =
        text.len() == DIGEST_BYTES * 2 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let mut digest = [0u8; DIGEST_BYTES];
    if !lowercase_hex || hex::decode_to_slice(text, &mut digest).is_err() {
        let shown: String = text.chars().take(80).collect();
        return Err(BadId { text: shown });
    }
    Ok(digest)
}

macro_rules! digest_id {
    ($name:ident, $prefix:literal, $doc:literal) => {
        #[doc = $doc]
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub [u8; DIGEST_BYTES]);

        impl $name {
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            pub fn as_bytes(&self) -> &[u8; DIGEST_BYTES] {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = BadId;
            fn from_str(text: &str) -> Result<Self, BadId> {
                parse_digest(text).map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let hex = self.to_hex();
                write!(f, "{}:{}…", $prefix, &hex[..DISPLAY_HEX_DIGITS])
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}:{}", $prefix, self.to_hex())
            }
        }

        /// Hex in JSON and TOML; the 32 bytes themselves in binary formats (postcard: the
        /// replicas' frames and records), where hex doubled the size and its encoding was
        /// 4 % of the machine under load (issue 16).
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                if serializer.is_human_readable() {
                    serializer.serialize_str(&self.to_hex())
                } else {
                    self.0.serialize(serializer)
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                if deserializer.is_human_readable() {
                    let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                    text.parse().map_err(serde::de::Error::custom)
                } else {
                    <[u8; DIGEST_BYTES]>::deserialize(deserializer).map(Self)
                }
            }
        }
    };
}

digest_id!(TxId, "tx", "A transaction's id: SHA-256 of its canonical encoding.");
digest_id!(ObjectId, "obj", "An object's id: SHA-256 of `\"{txId}|{sha256hex(value)}|{index}\"`.");

impl ObjectId {
    /// The id of output `index`, of value `value`, of the transaction `tx_id` (DESIGN.md §3).
    pub fn of_output(tx_id: &TxId, value: &str, index: usize) -> ObjectId {
        let text = format!("{}|{}|{}", tx_id.to_hex(), sha256_hex(value.as_bytes()), index);
        ObjectId(sha256(text.as_bytes()))
    }
}

/// A shard's number, from 0 to the number of shards minus one.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ShardId(pub u32);

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "shard:{}", self.0)
    }
}

impl fmt::Debug for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3fa1c2d4e5f60718293a4b5c6d7e8f900112233445566778899aabbccddeeff0";

    #[test]
    fn hex_round_trips_and_displays_short() {
        let id: TxId = ID.parse().unwrap();
        assert_eq!(id.to_hex(), ID);
        assert_eq!(id.to_string(), "tx:3fa1c2…");
        assert_eq!(format!("{id:?}"), format!("tx:{ID}"));
    }

    #[test]
    fn refuses_uppercase_short_long_and_non_hex() {
        for bad in [ID.to_uppercase(), ID[1..].to_string(), format!("{ID}0"), ID.replace('a', "g")] {
            assert!(bad.parse::<ObjectId>().is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn output_id_follows_the_formula() {
        // Python: sha256(f"{tx}|{sha256(b'0').hexdigest()}|0")
        let tx: TxId = ID.parse().unwrap();
        let expected =
            sha256_hex(format!("{ID}|5feceb66ffc86f38d952786c6d696c79c2dbc239dd4e91b46729d73a27fb57e9|0").as_bytes());
        assert_eq!(ObjectId::of_output(&tx, "0", 0).to_hex(), expected);
    }
}
