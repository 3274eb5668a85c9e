//! Filtered reads of a shard's objects (issue 19's queries): the objects of a contract,
//! of a status, and those whose value holds a field equal to a given value (bank's
//! accounts of one owner). A replica answers a page from its state: the store narrows the
//! candidates with its indexes (`Source::keys_where`), and each candidate is checked here
//! against its record as it is now, unsaved changes included. An index saves reads; it
//! never decides what is listed, so a stale index row cannot list a consumed object.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::replica::{PAGE_ENVELOPE_BYTES_MAX, Page};
use super::shard::{ObjectRecord, ObjectStatus};
use super::table::Table;
use crate::ids::ObjectId;

/// Which objects a page lists: all of those given must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectFilter {
    /// The contract whose transaction created the object.
    pub contract: Option<String>,
    pub status: Option<StatusKind>,
    pub field: Option<FieldMatch>,
}

/// A top-level field of an object's value (a JSON object) and what it must be: a string
/// field equals `equals` as text, any other its JSON text (`seq` equal to `0`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldMatch {
    pub name: String,
    pub equals: String,
}

/// An object's status without whom it is locked or consumed by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StatusKind {
    /// Free to be consumed.
    Active,
    /// Held by an accepted attempt that consumes it, until that attempt is decided.
    Locked,
    /// Consumed.
    Inactive,
}

impl StatusKind {
    pub fn of(status: &ObjectStatus) -> Self {
        match status {
            ObjectStatus::Active => Self::Active,
            ObjectStatus::Locked { .. } => Self::Locked,
            ObjectStatus::Inactive { .. } => Self::Inactive,
        }
    }

    /// Its name in the API and in the store's `status` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Locked => "locked",
            Self::Inactive => "inactive",
        }
    }
}

impl fmt::Display for StatusKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StatusKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        [Self::Active, Self::Locked, Self::Inactive]
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| format!("a status is active, locked or inactive, not {text:?}"))
    }
}

impl ObjectFilter {
    /// Why a replica refuses to page by this filter: an empty field name (every value
    /// holds it as text) or a text past `FILTER_TEXT_MAX`.
    pub fn verify(&self) -> Result<(), String> {
        let field = self.field.iter().flat_map(|field| [&field.name, &field.equals]);
        if let Some(long) = self.contract.iter().chain(field).find(|text| text.len() > FILTER_TEXT_MAX) {
            return Err(format!("a filter's text is at most {FILTER_TEXT_MAX} bytes, not {}", long.len()));
        }
        if self.field.as_ref().is_some_and(|field| field.name.is_empty()) {
            return Err("a field to match needs a name".into());
        }
        Ok(())
    }

    pub fn matches(&self, record: &ObjectRecord) -> bool {
        self.indexed_match(record) && self.field.as_ref().is_none_or(|field| field.matches(&record.value))
    }

    /// Whether the record holds the filter's indexed columns (contract and status): the
    /// candidates a page reads, whether from the store's index or from memory.
    fn indexed_match(&self, record: &ObjectRecord) -> bool {
        self.contract.as_ref().is_none_or(|contract| *contract == record.contract)
            && self.status.is_none_or(|status| status == StatusKind::of(&record.status))
    }

    /// The store's columns a candidate must hold, for its index to narrow the scan.
    pub fn columns(&self) -> Vec<(&'static str, String)> {
        let contract = self.contract.iter().map(|contract| ("contract", contract.clone()));
        let status = self.status.iter().map(|status| ("status", status.as_str().to_string()));
        contract.chain(status).collect()
    }
}

impl FieldMatch {
    fn matches(&self, value: &str) -> bool {
        // Most values are not what is asked for: look for the text before parsing.
        if !value.contains(self.name.as_str()) {
            return false;
        }
        let Ok(serde_json::Value::Object(fields)) = serde_json::from_str::<serde_json::Value>(value) else {
            return false;
        };
        match fields.get(&self.name) {
            Some(serde_json::Value::String(text)) => *text == self.equals,
            // Its JSON text (`Value` compared with a `String` would compare strings only).
            Some(other) => {
                let text = other.to_string();
                text == self.equals
            }
            None => false,
        }
    }
}

/// The most candidates (objects of the contract and status asked) one page reads: a page
/// of a field that few of them match ends where it stopped (`Page::scanned_to`) instead
/// of reading them all at once. Each is a read of the store on the replica's core task,
/// which orders nothing meanwhile: as many as a `PAGE_MAX` page reads.
pub const SCAN_MAX: usize = 1_000;

/// The bytes of values one page reads (a candidate read past them ends the page there):
/// with `SCAN_MAX`, what a page costs the replica's core task whatever the values' sizes.
pub const SCAN_BYTES_MAX: usize = 4 * 1024 * 1024;

/// The candidates asked of a table at a time.
pub(super) const CANDIDATES_AT_ONCE: usize = 256;

/// The longest field name and value, and contract name, a filter may hold.
pub const FILTER_TEXT_MAX: usize = 256;

/// The objects after `after` that `filter` lists, in id order: at most `limit`, and the
/// values of at most `PAGE_ENVELOPE_BYTES_MAX` (one at least, whatever its size).
pub fn objects_page(
    objects: &Table<ObjectId, ObjectRecord>,
    filter: &ObjectFilter,
    after: Option<ObjectId>,
    limit: usize,
) -> Page {
    let columns = filter.columns();
    let mut page = Page::default();
    let mut budget = PAGE_ENVELOPE_BYTES_MAX;
    let (mut cursor, mut read, mut read_bytes) = (after, 0, 0);
    while page.objects.len() < limit {
        if read >= SCAN_MAX || read_bytes >= SCAN_BYTES_MAX {
            page.scanned_to = cursor;
            break;
        }
        let asked = (SCAN_MAX - read).min(CANDIDATES_AT_ONCE.max(limit));
        let candidates = objects.keys_where(&columns, |record| filter.indexed_match(record), cursor.as_ref(), asked);
        if candidates.is_empty() {
            break;
        }
        for id in candidates {
            if read_bytes >= SCAN_BYTES_MAX {
                break; // the page ends after the last one read (`scanned_to`)
            }
            read += 1;
            cursor = Some(id);
            let Some(record) = objects.get(&id) else { continue };
            read_bytes += record.value.len();
            if !filter.matches(&record) {
                continue;
            }
            if record.value.len() > budget && !page.objects.is_empty() {
                page.cut = true;
                return page;
            }
            budget = budget.saturating_sub(record.value.len());
            page.objects.push((id, record.view()));
            if page.objects.len() == limit {
                break;
            }
        }
    }
    page
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::TxId;

    fn record(contract: &str, value: &str, status: ObjectStatus) -> ObjectRecord {
        ObjectRecord {
            value: value.into(),
            contract: contract.into(),
            created_by: TxId([0; 32]),
            status,
            readers: Default::default(),
        }
    }

    fn owner(name: &str, equals: &str) -> Option<FieldMatch> {
        Some(FieldMatch { name: name.into(), equals: equals.into() })
    }

    #[test]
    fn a_field_matches_its_text_or_its_json() {
        let account = record("bank", r#"{"balance":5,"owner":"ab","seq":0}"#, ObjectStatus::Active);
        let by = |field| ObjectFilter { field, ..ObjectFilter::default() };
        assert!(by(owner("owner", "ab")).matches(&account));
        assert!(by(owner("seq", "0")).matches(&account));
        assert!(!by(owner("owner", "\"ab\"")).matches(&account), "a string is compared as text");
        assert!(!by(owner("owner", "cd")).matches(&account));
        assert!(!by(owner("payee", "ab")).matches(&account));
        assert!(!by(owner("owner", "ab")).matches(&record("bank", "owner ab", ObjectStatus::Active)));
    }

    #[test]
    fn a_status_and_a_contract_must_both_hold() {
        let consumed = record("bank", "{}", ObjectStatus::Inactive { consumed_by: TxId([1; 32]) });
        let filter = |contract: &str, status| ObjectFilter {
            contract: Some(contract.into()),
            status: Some(status),
            field: None,
        };
        assert!(filter("bank", StatusKind::Inactive).matches(&consumed));
        assert!(!filter("bank", StatusKind::Active).matches(&consumed));
        assert!(!filter("dump", StatusKind::Inactive).matches(&consumed));
        assert_eq!("locked".parse::<StatusKind>(), Ok(StatusKind::Locked));
        assert!("spent".parse::<StatusKind>().is_err());
    }

    #[test]
    fn a_page_stops_at_its_limit_or_its_scan_and_says_where() {
        let id = |n: u32| {
            let mut bytes = [0; 32];
            bytes[..4].copy_from_slice(&n.to_be_bytes());
            ObjectId(bytes)
        };
        // Every tenth object is bank's: the rest are read and passed over.
        let objects = Table::from_entries((0..(SCAN_MAX as u32 * 10 + 2_000)).map(|n| {
            let contract = if n % 10 == 0 { "bank" } else { "dump" };
            (id(n), record(contract, "{}", ObjectStatus::Active))
        }));
        let bank = ObjectFilter { contract: Some("bank".into()), ..ObjectFilter::default() };
        let page = objects_page(&objects, &bank, None, 3);
        assert_eq!(page.objects.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![id(0), id(10), id(20)]);
        assert_eq!(page.scanned_to, None);
        let wanted = ObjectFilter { field: owner("owner", "nobody"), ..bank.clone() };
        let page = objects_page(&objects, &wanted, None, 10);
        assert!(page.objects.is_empty());
        assert_eq!(page.scanned_to, Some(id(SCAN_MAX as u32 * 10 - 10)), "SCAN_MAX of bank's read");
        let rest = objects_page(&objects, &wanted, page.scanned_to, 10);
        assert_eq!((rest.objects.len(), rest.scanned_to), (0, None), "the rest read to the end");
    }

    #[test]
    fn a_page_stops_once_it_has_read_scan_bytes_max_of_values() {
        let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(SCAN_BYTES_MAX / 4));
        let objects =
            Table::from_entries((0..10u8).map(|n| (ObjectId([n; 32]), record("bank", &big, ObjectStatus::Active))));
        let nobody = ObjectFilter { field: owner("owner", "nobody"), ..ObjectFilter::default() };
        let page = objects_page(&objects, &nobody, None, 10);
        assert_eq!((page.objects.len(), page.scanned_to), (0, Some(ObjectId([3; 32]))), "4 values read, not 10");
    }

    #[test]
    fn a_filter_with_an_empty_field_or_a_long_text_is_refused() {
        let with = |name: &str, equals: &str| ObjectFilter { field: owner(name, equals), ..ObjectFilter::default() };
        assert!(with("owner", "ab").verify().is_ok());
        assert!(with("", "ab").verify().is_err(), "every value holds the empty name");
        assert!(with("owner", &"a".repeat(FILTER_TEXT_MAX + 1)).verify().is_err());
        let contract = ObjectFilter { contract: Some("c".repeat(FILTER_TEXT_MAX + 1)), ..ObjectFilter::default() };
        assert!(contract.verify().is_err());
    }
}
