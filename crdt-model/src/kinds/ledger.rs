//! A unit's ledger: the attestations it has issued (review and approval of admitted tasks,
//! filing of conventions, checkpoints), and the trust records (registrations, certificates,
//! revocations) its admins signed, as opaque signed blobs. The trust records travel here
//! because only the top unit writes the directory, and a street's revocation must still reach
//! every node.
//!
//! Attestations live in the issuer's own document because each unit writes only its own
//! documents, and a ledger replicates like any other document so every node can check an
//! approval (admission: seed 000 §一(一); filing: seed 000 §二(三)). The model verifies the
//! signatures elsewhere; here a blob is bytes, and once written it never changes.

use std::collections::BTreeMap;

use automerge::AutoCommit;

use super::{EditError, SchemaError};

pub const ATTESTATIONS: &str = "attestations";
/// Signed `cert::TrustRecord`s by record id.
pub const TRUST: &str = "trust";

/// The hydrated ledger: record id → signed bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Ledger {
    pub attestations: BTreeMap<String, Vec<u8>>,
    pub trust: BTreeMap<String, Vec<u8>>,
}

/// Writes the empty ledger. Called once, by the creator, in the first change.
pub fn init(doc: &mut AutoCommit) -> Result<(), EditError> {
    super::init_maps(doc, &[ATTESTATIONS, TRUST])
}

pub fn hydrate(doc: &impl automerge::ReadDoc) -> Result<Ledger, SchemaError> {
    let doc = &super::Reader::new(doc);
    Ok(Ledger {
        attestations: super::blobs(doc, ATTESTATIONS)?,
        trust: super::blobs(doc, TRUST)?,
    })
}

/// Stores a signed trust record (immutable like attestations).
pub fn put_trust_record(doc: &mut AutoCommit, id: &str, bytes: &[u8]) -> Result<(), EditError> {
    super::put_blob(doc, TRUST, id, bytes)
}

/// Stores an attestation. The same bytes again are a no-op; other bytes under a used id are
/// refused with [`EditError::AlreadyExists`], because an attestation is a signed statement.
pub fn put_attestation(doc: &mut AutoCommit, id: &str, bytes: &[u8]) -> Result<(), EditError> {
    super::put_blob(doc, ATTESTATIONS, id, bytes)
}

/// Check one record, with the rules of [`hydrate`].
pub(super) fn validate_record(
    doc: &impl autosurgeon::ReadDoc,
    collection: &str,
    id: &str,
) -> Result<(), SchemaError> {
    match collection {
        ATTESTATIONS | TRUST => {
            super::one_record::<autosurgeon::bytes::ByteVec>(doc, collection, id).map(drop)
        }
        other => Err(super::unknown_collection(other)),
    }
}

#[cfg(test)]
mod tests {
    use automerge::ReadDoc;
    use automerge::transaction::Transactable;
    use expect_test::expect;
    use proptest::prelude::*;

    use super::super::tests_support::{converges, fork, new_doc};
    use super::*;

    fn new() -> AutoCommit {
        let mut doc = new_doc();
        init(&mut doc).expect("init");
        doc
    }

    #[test]
    fn put_and_hydrate() {
        let mut doc = new();
        put_attestation(&mut doc, "a-1", b"review").expect("put");
        put_attestation(&mut doc, "a-2", &[0, 1, 2]).expect("put");
        put_attestation(&mut doc, "a-1", b"review").expect("same bytes again");
        expect![[r#"
            Ledger {
                attestations: {
                    "a-1": [
                        114,
                        101,
                        118,
                        105,
                        101,
                        119,
                    ],
                    "a-2": [
                        0,
                        1,
                        2,
                    ],
                },
                trust: {},
            }
        "#]]
        .assert_debug_eq(&hydrate(&doc).expect("hydrate"));
    }

    #[test]
    fn edit_errors() {
        let mut doc = new();
        put_attestation(&mut doc, "a-1", b"x").expect("put");
        let errors = [
            put_attestation(&mut doc, "a-1", b"y"),
            put_attestation(&mut doc, "", b"y"),
            put_attestation(&mut doc, "a-2", b""),
            put_attestation(&mut AutoCommit::new(), "a-1", b"x"),
        ];
        expect![[r#"
            [
                "attestations record \"a-1\" already exists",
                "invalid id: must not be empty",
                "invalid bytes: must not be empty",
                "document does not match its schema: missing attestations",
            ]
        "#]]
        .assert_debug_eq(&errors.map(|r| r.expect_err("refused").to_string()));
    }

    #[test]
    fn schema_errors() {
        let mut doc = new();
        let map = doc
            .get(automerge::ROOT, ATTESTATIONS)
            .ok()
            .flatten()
            .map(|(_, id)| id)
            .expect("attestations map");
        doc.put(&map, "a-1", "not bytes").expect("put");
        expect![[r#"attestations/a-1: unexpected string"#]]
            .assert_eq(&hydrate(&doc).expect_err("schema").to_string());

        let mut doc = AutoCommit::new();
        doc.put(automerge::ROOT, ATTESTATIONS, 3).expect("put");
        expect!["attestations: expected map, found scalar 3"]
            .assert_eq(&hydrate(&doc).expect_err("schema").to_string());
    }

    #[test]
    fn concurrent_puts_merge() {
        let mut a = new();
        let mut b = fork(&mut a, 2);
        put_attestation(&mut a, "street-1", b"filed").expect("put");
        put_attestation(&mut b, "district-1", b"checkpoint").expect("put");
        a.merge(&mut b).expect("merge");
        let ledger = hydrate(&a).expect("hydrate");
        assert_eq!(
            ledger.attestations.keys().collect::<Vec<_>>(),
            ["district-1", "street-1"]
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        #[test]
        fn any_order_converges(order in Just((0..4usize).collect::<Vec<_>>()).prop_shuffle()) {
            converges(new, |doc, i| {
                put_attestation(doc, &format!("a-{i}"), &[i as u8; 3]).expect("put");
            }, 4, &order, hydrate);
        }
    }
}
