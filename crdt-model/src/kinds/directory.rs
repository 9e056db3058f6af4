//! The network directory: the units of the hierarchy, the certificates and revocations that
//! give keys their authority, and the two legal lists that bound what communities can be asked
//! to do.
//!
//! One directory per network, written by the district (the root of trust). It holds the duty
//! list (依法履行职责事项清单) and the assistance list (依法协助党委和政府工作事项清单), because
//! work outside them needs admission (seed 000 §一(一), 003 §四(四), 002 §四). Certificates and
//! revocations are opaque signed blobs here; the model verifies them elsewhere.

use std::collections::BTreeMap;

use automerge::AutoCommit;
use autosurgeon::{Hydrate, Reconcile};

use super::{EditError, SchemaError, UnknownValue};

const UNITS: &str = "units";
pub const CERTIFICATES: &str = "certificates";
pub const REVOCATIONS: &str = "revocations";
pub const REGISTRATIONS: &str = "registrations";
const DUTY_LIST: &str = "duty_list";
const ASSISTANCE_LIST: &str = "assistance_list";

string_enum! {
    /// A level of the hierarchy (三级联动, plus grids below communities).
    pub enum UnitKind ("a unit kind") {
        District = "district", "区";
        Street = "street", "街道";
        Community = "community", "社区";
        Grid = "grid", "网格";
    }
}

impl UnitKind {
    /// The kind a unit's parent must have; a district is the top and has none.
    pub fn parent_kind(self) -> Option<UnitKind> {
        match self {
            UnitKind::District => None,
            UnitKind::Street => Some(UnitKind::District),
            UnitKind::Community => Some(UnitKind::Street),
            UnitKind::Grid => Some(UnitKind::Community),
        }
    }
}

string_enum! {
    /// Which of the two legal lists.
    pub enum List ("a list") {
        /// 依法履行职责事项清单.
        Duty = "duty", "依法履行职责事项清单";
        /// 依法协助党委和政府工作事项清单.
        Assistance = "assistance", "依法协助党委和政府工作事项清单";
    }
}

impl List {
    fn key(self) -> &'static str {
        match self {
            List::Duty => DUTY_LIST,
            List::Assistance => ASSISTANCE_LIST,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hydrate, Reconcile, serde::Serialize, serde::Deserialize)]
pub struct UnitEntry {
    /// Display name, e.g. "胜利社区".
    pub name: String,
    pub kind: UnitKind,
    /// The unit id of the parent; `None` only for a district.
    pub parent: Option<String>,
}

impl From<&crate::unit::Unit> for UnitEntry {
    /// The display entry of a registered unit.
    fn from(u: &crate::unit::Unit) -> UnitEntry {
        use crate::unit::UnitKind as K;
        let kind = match u.kind {
            K::District => UnitKind::District,
            K::Street => UnitKind::Street,
            K::Community => UnitKind::Community,
            K::Grid => UnitKind::Grid,
        };
        UnitEntry {
            name: u.name.clone(),
            kind,
            parent: u.id.parent().map(|p| p.to_string()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hydrate, Reconcile, serde::Serialize, serde::Deserialize)]
pub struct ListItem {
    pub title: String,
    /// The law or policy that puts the item on the list.
    pub legal_basis: String,
    /// A unit id limiting the item to one part of the network; `None` for everywhere.
    pub unit_scope: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Directory {
    pub units: BTreeMap<String, UnitEntry>,
    pub certificates: BTreeMap<String, Vec<u8>>,
    pub revocations: BTreeMap<String, Vec<u8>>,
    pub registrations: BTreeMap<String, Vec<u8>>,
    pub duty_list: BTreeMap<String, ListItem>,
    pub assistance_list: BTreeMap<String, ListItem>,
}

impl Directory {
    pub fn list(&self, list: List) -> &BTreeMap<String, ListItem> {
        match list {
            List::Duty => &self.duty_list,
            List::Assistance => &self.assistance_list,
        }
    }

    /// The ids from `unit_id` up to the top, starting with `unit_id` itself. Stops at a unit
    /// that is missing or at a cycle (which concurrent `put_unit`s can create).
    pub fn ancestry<'a>(&'a self, unit_id: &'a str) -> Vec<&'a str> {
        let mut chain = vec![unit_id];
        let mut current = unit_id;
        while let Some(parent) = self.units.get(current).and_then(|u| u.parent.as_deref()) {
            if chain.contains(&parent) {
                break;
            }
            chain.push(parent);
            current = parent;
        }
        chain
    }
}

/// Writes the empty directory. Called once, by the creator, in the first change.
pub fn init(doc: &mut AutoCommit) -> Result<(), EditError> {
    super::init_maps(
        doc,
        &[
            UNITS,
            CERTIFICATES,
            REVOCATIONS,
            REGISTRATIONS,
            DUTY_LIST,
            ASSISTANCE_LIST,
        ],
    )
}

pub fn hydrate(doc: &impl automerge::ReadDoc) -> Result<Directory, SchemaError> {
    let doc = &super::Reader::new(doc);
    Ok(Directory {
        units: super::records(doc, UNITS)?,
        certificates: super::blobs(doc, CERTIFICATES)?,
        revocations: super::blobs(doc, REVOCATIONS)?,
        registrations: super::blobs(doc, REGISTRATIONS)?,
        duty_list: super::records(doc, DUTY_LIST)?,
        assistance_list: super::records(doc, ASSISTANCE_LIST)?,
    })
}

/// Adds or replaces a unit. The parent must already be in the directory and be one level up
/// (district → street → community → grid); only a district has no parent.
pub fn put_unit(doc: &mut AutoCommit, unit_id: &str, unit: &UnitEntry) -> Result<(), EditError> {
    super::check_id(unit_id)?;
    super::non_empty("name", &unit.name)?;
    match (&unit.parent, unit.kind.parent_kind()) {
        (None, None) => {}
        (Some(_), None) => return Err(super::invalid("parent", "a district has no parent")),
        (None, Some(want)) => {
            return Err(super::invalid(
                "parent",
                format!("a {} needs a parent {}", unit.kind, want),
            ));
        }
        (Some(parent), Some(want)) => {
            if parent == unit_id {
                return Err(super::invalid("parent", "a unit cannot be its own parent"));
            }
            let parent_entry: UnitEntry = super::record(doc, UNITS, parent)?;
            if parent_entry.kind != want {
                return Err(super::invalid(
                    "parent",
                    format!(
                        "{parent:?} is a {}, a {} needs a parent {}",
                        parent_entry.kind, unit.kind, want
                    ),
                ));
            }
        }
    }
    let map = super::root_map(doc, UNITS)?;
    autosurgeon::reconcile_prop(doc, &map, unit_id, unit)?;
    Ok(())
}

/// Stores a signed certificate (immutable: same bytes again is a no-op, other bytes refused).
pub fn put_certificate(doc: &mut AutoCommit, id: &str, bytes: &[u8]) -> Result<(), EditError> {
    super::put_blob(doc, CERTIFICATES, id, bytes)
}

/// Stores a signed registration (immutable like certificates).
pub fn put_registration(doc: &mut AutoCommit, id: &str, bytes: &[u8]) -> Result<(), EditError> {
    super::put_blob(doc, REGISTRATIONS, id, bytes)
}

/// Stores a signed revocation (immutable like certificates).
pub fn put_revocation(doc: &mut AutoCommit, id: &str, bytes: &[u8]) -> Result<(), EditError> {
    super::put_blob(doc, REVOCATIONS, id, bytes)
}

/// Adds or replaces an item of one of the two lists. An item needs its legal basis: the lists
/// exist to say what communities may lawfully be asked to do (seed 000 §一(一)).
pub fn put_list_item(
    doc: &mut AutoCommit,
    list: List,
    id: &str,
    item: &ListItem,
) -> Result<(), EditError> {
    super::check_id(id)?;
    super::non_empty("title", &item.title)?;
    super::non_empty("legal_basis", &item.legal_basis)?;
    if let Some(scope) = &item.unit_scope {
        super::record::<UnitEntry>(doc, UNITS, scope)?;
    }
    let map = super::root_map(doc, list.key())?;
    autosurgeon::reconcile_prop(doc, &map, id, item)?;
    Ok(())
}

pub fn remove_list_item(doc: &mut AutoCommit, list: List, id: &str) -> Result<(), EditError> {
    super::delete_record(doc, list.key(), id)
}

/// Check one record, with the rules of [`hydrate`].
pub(super) fn validate_record(
    doc: &impl autosurgeon::ReadDoc,
    collection: &str,
    id: &str,
) -> Result<(), SchemaError> {
    match collection {
        UNITS => super::one_record::<UnitEntry>(doc, collection, id).map(drop),
        CERTIFICATES | REVOCATIONS | REGISTRATIONS => {
            super::one_record::<autosurgeon::bytes::ByteVec>(doc, collection, id).map(drop)
        }
        DUTY_LIST | ASSISTANCE_LIST => super::one_record::<ListItem>(doc, collection, id).map(drop),
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

    fn unit(name: &str, kind: UnitKind, parent: Option<&str>) -> UnitEntry {
        UnitEntry {
            name: name.into(),
            kind,
            parent: parent.map(Into::into),
        }
    }

    fn item(title: &str, basis: &str) -> ListItem {
        ListItem {
            title: title.into(),
            legal_basis: basis.into(),
            unit_scope: None,
        }
    }

    /// Tiedong district, Jiefang street, Shengli community.
    fn populated() -> AutoCommit {
        let mut doc = new();
        put_unit(
            &mut doc,
            "tiedong",
            &unit("铁东区", UnitKind::District, None),
        )
        .expect("put");
        put_unit(
            &mut doc,
            "tiedong/jiefang",
            &unit("解放街道", UnitKind::Street, Some("tiedong")),
        )
        .expect("put");
        put_unit(
            &mut doc,
            "tiedong/jiefang/shengli",
            &unit("胜利社区", UnitKind::Community, Some("tiedong/jiefang")),
        )
        .expect("put");
        doc
    }

    #[test]
    fn realistic_directory() {
        let mut doc = populated();
        put_certificate(&mut doc, "cert-1", &[1, 2, 3]).expect("put");
        put_revocation(&mut doc, "rev-1", &[9]).expect("put");
        put_list_item(
            &mut doc,
            List::Duty,
            "d-1",
            &item("组织居民依法开展自治活动", "《城市居民委员会组织法》第三条"),
        )
        .expect("put");
        put_list_item(
            &mut doc,
            List::Assistance,
            "a-1",
            &ListItem {
                unit_scope: Some("tiedong/jiefang".into()),
                ..item("协助开展人口普查", "《全国人口普查条例》")
            },
        )
        .expect("put");
        put_list_item(&mut doc, List::Duty, "d-2", &item("临时", "无")).expect("put");
        remove_list_item(&mut doc, List::Duty, "d-2").expect("remove");
        let dir = hydrate(&doc).expect("hydrate");
        expect![[r#"
            Directory {
                units: {
                    "tiedong": UnitEntry {
                        name: "铁东区",
                        kind: District,
                        parent: None,
                    },
                    "tiedong/jiefang": UnitEntry {
                        name: "解放街道",
                        kind: Street,
                        parent: Some(
                            "tiedong",
                        ),
                    },
                    "tiedong/jiefang/shengli": UnitEntry {
                        name: "胜利社区",
                        kind: Community,
                        parent: Some(
                            "tiedong/jiefang",
                        ),
                    },
                },
                certificates: {
                    "cert-1": [
                        1,
                        2,
                        3,
                    ],
                },
                revocations: {
                    "rev-1": [
                        9,
                    ],
                },
                registrations: {},
                duty_list: {
                    "d-1": ListItem {
                        title: "组织居民依法开展自治活动",
                        legal_basis: "《城市居民委员会组织法》第三条",
                        unit_scope: None,
                    },
                },
                assistance_list: {
                    "a-1": ListItem {
                        title: "协助开展人口普查",
                        legal_basis: "《全国人口普查条例》",
                        unit_scope: Some(
                            "tiedong/jiefang",
                        ),
                    },
                },
            }
        "#]]
        .assert_debug_eq(&dir);
        expect![[r#"["tiedong/jiefang/shengli", "tiedong/jiefang", "tiedong"]"#]]
            .assert_eq(&format!("{:?}", dir.ancestry("tiedong/jiefang/shengli")));
        assert_eq!(dir.list(List::Duty).len(), 1);
        expect![[r#"{"name":"胜利社区","kind":"community","parent":"tiedong/jiefang"}"#]]
            .assert_eq(
                &serde_json::to_string(&dir.units["tiedong/jiefang/shengli"]).expect("json"),
            );
    }

    #[test]
    fn edit_errors() {
        let mut doc = populated();
        let errors = [
            put_unit(&mut doc, "", &unit("某区", UnitKind::District, None)),
            put_unit(&mut doc, "x", &unit(" ", UnitKind::District, None)),
            put_unit(
                &mut doc,
                "x",
                &unit("某区", UnitKind::District, Some("tiedong")),
            ),
            put_unit(&mut doc, "x", &unit("某街道", UnitKind::Street, None)),
            put_unit(&mut doc, "x", &unit("某街道", UnitKind::Street, Some("x"))),
            put_unit(
                &mut doc,
                "x",
                &unit("某街道", UnitKind::Street, Some("nowhere")),
            ),
            put_unit(
                &mut doc,
                "x",
                &unit("某社区", UnitKind::Community, Some("tiedong")),
            ),
            put_certificate(&mut doc, "c", &[]),
            put_list_item(&mut doc, List::Duty, "d", &item("", "法")),
            put_list_item(&mut doc, List::Duty, "d", &item("事项", " ")),
            put_list_item(
                &mut doc,
                List::Duty,
                "d",
                &ListItem {
                    unit_scope: Some("nowhere".into()),
                    ..item("事项", "法")
                },
            ),
            remove_list_item(&mut doc, List::Assistance, "missing"),
        ];
        expect![[r#"
            [
                "invalid id: must not be empty",
                "invalid name: must not be empty",
                "invalid parent: a district has no parent",
                "invalid parent: a street needs a parent district",
                "invalid parent: a unit cannot be its own parent",
                "no units record \"nowhere\"",
                "invalid parent: \"tiedong\" is a district, a community needs a parent street",
                "invalid bytes: must not be empty",
                "invalid title: must not be empty",
                "invalid legal_basis: must not be empty",
                "no units record \"nowhere\"",
                "no assistance_list record \"missing\"",
            ]
        "#]]
        .assert_debug_eq(&errors.map(|r| r.expect_err("refused").to_string()));
        put_revocation(&mut doc, "r", b"one").expect("put");
        assert!(matches!(
            put_revocation(&mut doc, "r", b"two"),
            Err(EditError::AlreadyExists {
                collection: "revocations",
                ..
            })
        ));
    }

    #[test]
    fn schema_errors() {
        let mut doc = populated();
        let units = super::super::root_map(&doc, UNITS).expect("units");
        let (_, unit_obj) = doc.get(&units, "tiedong").ok().flatten().expect("tiedong");
        doc.put(&unit_obj, "kind", "province").expect("put");
        expect![[r#"units/tiedong: unexpected "province", expected a unit kind (district | street | community | grid)"#]]
            .assert_eq(&hydrate(&doc).expect_err("schema").to_string());
        assert!(super::super::validate(super::super::Kind::Directory, &doc).is_err());
    }

    #[test]
    fn concurrent_units_and_list_items_merge() {
        let mut a = populated();
        let mut b = fork(&mut a, 2);
        put_unit(
            &mut a,
            "tiedong/jiefang/shengli/g1",
            &unit("第一网格", UnitKind::Grid, Some("tiedong/jiefang/shengli")),
        )
        .expect("put");
        put_list_item(
            &mut b,
            List::Duty,
            "d-1",
            &item("调解民间纠纷", "《人民调解法》"),
        )
        .expect("put");
        put_unit(
            &mut b,
            "tiedong/jiefang/yongan",
            &unit("永安社区", UnitKind::Community, Some("tiedong/jiefang")),
        )
        .expect("put");
        a.merge(&mut b).expect("merge");
        let dir = hydrate(&a).expect("hydrate");
        assert_eq!(dir.units.len(), 5);
        assert_eq!(dir.duty_list.len(), 1);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        #[test]
        fn any_order_converges(order in Just((0..9usize).collect::<Vec<_>>()).prop_shuffle()) {
            converges(populated, |doc, i| match i % 3 {
                0 => put_unit(
                    doc,
                    &format!("tiedong/s{i}"),
                    &unit(&format!("街道{i}"), UnitKind::Street, Some("tiedong")),
                ).expect("put"),
                1 => put_list_item(doc, List::Duty, "d-1", &item(&format!("事项{i}"), "法"))
                    .expect("put"),
                _ => put_certificate(doc, &format!("c-{i}"), &[i as u8]).expect("put"),
            }, 9, &order, hydrate);
        }
    }
}
