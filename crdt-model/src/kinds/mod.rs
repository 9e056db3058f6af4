//! Typed APIs of the six document kinds, so that no caller ever touches a raw Automerge path.
//!
//! A document body arrives from peers we do not control, so reading it is a fallible
//! [`hydrate`](convention::hydrate) that returns a [`SchemaError`] naming the offending path, and
//! [`validate`] runs that same check on every ingest. Writing goes through edit functions that
//! check their typed arguments ([`EditError`] names the field) and touch only the map keys that
//! change, because a visit log or task list holds thousands of records and two nodes must be able
//! to edit different records of it at the same time.
//!
//! Conventions shared by every kind:
//!
//! - `init` writes the root maps. Only the document's creator calls it, in the very first change:
//!   if two nodes each created a root map under the same key, Automerge would keep one and the
//!   records written into the other would disappear from view.
//! - Records live in maps keyed by caller-generated ids, never in lists, so concurrent additions
//!   from two nodes merge without loss.
//! - Edit functions do not commit: the caller commits and signs the change.
//! - The model is pure: times come in as `at_ms` (milliseconds since the Unix epoch), calendar
//!   dates as `"YYYY-MM-DD"` and months as `"YYYY-MM"`, both validated here.
//! - Enumerations are stored as kebab-case strings (`"in-progress"`), the same names serde uses.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use automerge::{ObjId, ObjType, ROOT, Value};
use autosurgeon::{Hydrate, ReadDoc, Reconcile};

/// Lets autosurgeon hydrate from anything that implements [`automerge::ReadDoc`] (an
/// `AutoCommit`, an `Automerge`, a fork at old heads, or an opaque `&impl ReadDoc`), which is the
/// bound the public `hydrate` functions take. autosurgeon only implements its own `ReadDoc` for
/// the concrete document types.
///
/// autosurgeon reads a record field by field, one `get` each, and a `get` in automerge 0.12
/// seeks through the document's op columns (≈ 5 µs in a month's visit log), while one
/// `map_range` sweep over an object reads all of it for about the price of one `get`. So the
/// reader sweeps each map or list the first time it is asked about it and answers from that:
/// hydrating a 3,000-visit log costs ≈ 12× less. An object can be marked *partial*
/// ([`Reader::partial_root_map`]) when only a few of its keys will be read — one record of a
/// large root map — and is then read key by key as before. Answers are the same either way:
/// both `get` and the sweeps return the visible (winning) value of each key.
///
/// `automerge::ReadDoc` has no `get_heads`, so this reports none. autosurgeon uses heads only
/// to refuse reconciling a hydrated [`autosurgeon::Text`] into a document that moved on; this
/// module never reconciles hydrated text (it edits with `update_text`), and a caller that tried
/// would get that refusal, not a wrong edit.
struct Reader<'a, D> {
    doc: &'a D,
    swept: RefCell<HashMap<ObjId, Swept>>,
    /// Types of the objects seen as values in a sweep, so asking for them costs no seek.
    types: RefCell<HashMap<ObjId, ObjType>>,
}

/// What a reader learnt of one object.
#[derive(Debug)]
enum Swept {
    /// Every visible key of a map (`complete`), or the keys read so far one by one.
    Map {
        complete: bool,
        items: HashMap<String, (Value<'static>, ObjId)>,
    },
    List(Vec<(Value<'static>, ObjId)>),
}

impl<'a, D: automerge::ReadDoc> Reader<'a, D> {
    fn new(doc: &'a D) -> Self {
        Reader {
            doc,
            swept: RefCell::new(HashMap::new()),
            types: RefCell::new(HashMap::new()),
        }
    }

    fn note_type(&self, value: &Value<'_>, id: &ObjId) {
        if let Value::Object(t) = value {
            self.types.borrow_mut().insert(id.clone(), *t);
        }
    }

    fn type_of(&self, obj: &ObjId) -> Option<ObjType> {
        if let Some(t) = self.types.borrow().get(obj) {
            return Some(*t);
        }
        self.doc.object_type(obj).ok()
    }

    /// Read the root map `key` key by key instead of sweeping it: for checking a few records
    /// of a collection that may hold thousands.
    fn partial_root_map(&self, key: &str) {
        if let Ok(Some((Value::Object(ObjType::Map | ObjType::Table), obj))) =
            ReadDoc::get(self, &ROOT, key)
        {
            self.swept.borrow_mut().insert(
                obj,
                Swept::Map {
                    complete: false,
                    items: HashMap::new(),
                },
            );
        }
    }

    fn sweep_map(&self, obj: &ObjId) -> Swept {
        let items = self
            .doc
            .map_range(obj, ..)
            .map(|item| {
                let (id, value) = (item.id(), Value::from(item.value));
                self.note_type(&value, &id);
                (item.key.into_owned(), (value, id))
            })
            .collect();
        Swept::Map {
            complete: true,
            items,
        }
    }

    fn sweep_list(&self, obj: &ObjId) -> Swept {
        Swept::List(
            self.doc
                .list_range(obj, ..)
                .map(|item| {
                    let (id, value) = (item.id(), Value::from(item.value));
                    self.note_type(&value, &id);
                    (value, id)
                })
                .collect(),
        )
    }
}

impl<D: automerge::ReadDoc> ReadDoc for Reader<'_, D> {
    type Parents<'a>
        = automerge::Parents<'a>
    where
        Self: 'a;

    fn get_heads(&self) -> Vec<automerge::ChangeHash> {
        Vec::new()
    }

    fn get<P: Into<automerge::Prop>>(
        &self,
        obj: &ObjId,
        prop: P,
    ) -> Result<Option<(Value<'_>, ObjId)>, automerge::AutomergeError> {
        let prop = prop.into();
        let mut swept = self.swept.borrow_mut();
        if !swept.contains_key(obj) {
            let fresh = match (&prop, self.type_of(obj)) {
                (automerge::Prop::Map(_), Some(ObjType::Map | ObjType::Table)) => {
                    self.sweep_map(obj)
                }
                (automerge::Prop::Seq(_), Some(ObjType::List)) => self.sweep_list(obj),
                // Text, a type mismatch or an unknown object: let Automerge answer (or refuse).
                _ => return self.doc.get(obj, prop),
            };
            swept.insert(obj.clone(), fresh);
        }
        match (swept.get_mut(obj), prop) {
            (Some(Swept::Map { complete, items }), automerge::Prop::Map(key)) => {
                if let Some(hit) = items.get(&key) {
                    return Ok(Some(hit.clone()));
                }
                if *complete {
                    return Ok(None);
                }
                let found = self
                    .doc
                    .get(obj, key.as_str())?
                    .map(|(v, id)| (v.into_owned(), id));
                if let Some(f) = &found {
                    items.insert(key, f.clone());
                }
                Ok(found)
            }
            (Some(Swept::List(items)), automerge::Prop::Seq(i)) => Ok(items.get(i).cloned()),
            (_, prop) => self.doc.get(obj, prop),
        }
    }

    fn object_type<O: AsRef<ObjId>>(&self, obj: O) -> Option<ObjType> {
        self.type_of(obj.as_ref())
    }

    fn map_range<'a, O, R>(&'a self, obj: O, range: R) -> automerge::iter::MapRange<'a>
    where
        R: std::ops::RangeBounds<String> + 'a,
        O: AsRef<ObjId>,
        R: std::ops::RangeBounds<String>,
    {
        self.doc.map_range(obj, range)
    }

    fn list_range<O: AsRef<ObjId>, R: std::ops::RangeBounds<usize>>(
        &self,
        obj: O,
        range: R,
    ) -> automerge::iter::ListRange<'_> {
        self.doc.list_range(obj, range)
    }

    fn length<O: AsRef<ObjId>>(&self, obj: O) -> usize {
        match self.swept.borrow().get(obj.as_ref()) {
            Some(Swept::List(items)) => items.len(),
            Some(Swept::Map {
                complete: true,
                items,
            }) => items.len(),
            _ => self.doc.length(obj),
        }
    }

    fn text<O: AsRef<ObjId>>(&self, obj: O) -> Result<String, automerge::AutomergeError> {
        self.doc.text(obj)
    }

    fn parents<O: AsRef<ObjId>>(
        &self,
        obj: O,
    ) -> Result<Self::Parents<'_>, automerge::AutomergeError> {
        self.doc.parents(obj)
    }

    fn is_empty(&self) -> bool {
        self.doc.keys(ROOT).next().is_none()
    }
}

/// Defines a closed set of values stored in documents as kebab-case strings, with its Chinese
/// display label. Hydrating an unknown string is a schema error, not a panic. The invoking module
/// must have `UnknownValue` in scope.
macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident ($what:literal) {
            $( $(#[$vmeta:meta])* $variant:ident = $s:literal, $zh:literal; )+
        }
    ) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash,
            serde::Serialize, serde::Deserialize,
        )]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $s)] $variant, )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The kebab-case name stored in documents and used by serde.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s),+ }
            }

            /// The Chinese label for display.
            pub fn label_zh(self) -> &'static str {
                match self { $($name::$variant => $zh),+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownValue;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($s => Ok($name::$variant),)+
                    _ => Err(UnknownValue::new($what, s, Self::ALL.iter().map(|v| v.as_str()))),
                }
            }
        }

        impl autosurgeon::Reconcile for $name {
            type Key<'a> = autosurgeon::reconcile::NoKey;

            fn reconcile<R: autosurgeon::Reconciler>(&self, mut reconciler: R) -> Result<(), R::Error> {
                reconciler.str(self.as_str())
            }
        }

        impl autosurgeon::Hydrate for $name {
            fn hydrate_string(s: &str) -> Result<Self, autosurgeon::HydrateError> {
                s.parse::<$name>().map_err(|e| {
                    autosurgeon::HydrateError::unexpected(e.expected(), format!("{s:?}"))
                })
            }
        }
    };
}

pub mod convention;
pub mod directory;
pub mod ledger;
pub mod minutes;
pub mod tasks;
pub mod visits;

string_enum! {
    /// The kind of a document, fixed in its signed header.
    pub enum Kind ("a document kind") {
        /// 居民公约 / 村规民约.
        Convention = "convention", "公约";
        /// 协商议事记录.
        Minutes = "minutes", "议事记录";
        /// A unit's task list (清单事项, 准入事项, 吹哨报到).
        TaskList = "task-list", "任务清单";
        /// A community's visit log for one month (走访记录).
        VisitLog = "visit-log", "走访记录";
        /// The network directory: units, certificates, revocations, the two lists.
        Directory = "directory", "目录";
        /// A unit's attestations (审核, 审批, 备案, 检查点).
        Ledger = "ledger", "台账";
    }
}

/// Checks that `doc` has the schema of `kind`, by hydrating it. Run on every ingest: a document
/// a peer broke must be refused, not stored.
/// What a set of changes wrote: root keys written directly, and records (collection, id) inside
/// the root maps. Built from Automerge patches, so validating a change costs in proportion to
/// the change, not to the document (a month's visit log holds thousands of records).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Touched {
    pub root: BTreeSet<String>,
    pub records: BTreeSet<(String, String)>,
}

impl Touched {
    pub fn from_patches(patches: &[automerge::Patch]) -> Touched {
        use automerge::{PatchAction, Prop};
        let mut t = Touched::default();
        let action_key = |a: &PatchAction| match a {
            PatchAction::PutMap { key, .. } | PatchAction::DeleteMap { key } => Some(key.clone()),
            PatchAction::Increment {
                prop: Prop::Map(key),
                ..
            } => Some(key.clone()),
            PatchAction::Conflict {
                prop: Prop::Map(key),
            } => Some(key.clone()),
            _ => None,
        };
        for p in patches {
            let prop = |i: usize| match p.path.get(i) {
                Some((_, Prop::Map(k))) => Some(k.clone()),
                _ => None,
            };
            match p.path.len() {
                0 => match action_key(&p.action) {
                    Some(k) => {
                        t.root.insert(k);
                    }
                    // Anything else at the root: judge the whole document.
                    None => {
                        t.root.insert(String::new());
                    }
                },
                1 => match (prop(0), action_key(&p.action)) {
                    (Some(c), Some(id)) => {
                        t.records.insert((c, id));
                    }
                    (Some(c), None) => {
                        t.root.insert(c);
                    }
                    _ => {
                        t.root.insert(String::new());
                    }
                },
                _ => match (prop(0), prop(1)) {
                    (Some(c), Some(id)) => {
                        t.records.insert((c, id));
                    }
                    (Some(c), None) => {
                        t.root.insert(c);
                    }
                    _ => {
                        t.root.insert(String::new());
                    }
                },
            }
        }
        t
    }

    /// Judge the whole document.
    pub fn everything() -> Touched {
        Touched {
            root: BTreeSet::from([String::new()]),
            records: BTreeSet::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.root.is_empty() && self.records.is_empty()
    }
}

/// Validate only what changed. A root key written directly means the whole document is judged
/// (that happens at creation and for small root fields such as minutes' meta); otherwise each
/// touched record is hydrated and checked alone, with the same rules as [`validate`].
pub fn validate_touched(
    kind: Kind,
    doc: &impl automerge::ReadDoc,
    touched: &Touched,
) -> Result<(), SchemaError> {
    if !touched.root.is_empty() {
        return validate(kind, doc);
    }
    let reader = &Reader::new(doc);
    let collections: BTreeSet<&str> = touched.records.iter().map(|(c, _)| c.as_str()).collect();
    for collection in collections {
        reader.partial_root_map(collection);
    }
    for (collection, id) in &touched.records {
        match kind {
            Kind::Convention => convention::validate_record(reader, collection, id)?,
            Kind::Minutes => minutes::validate_record(reader, collection, id)?,
            Kind::TaskList => tasks::validate_record(reader, collection, id)?,
            Kind::VisitLog => visits::validate_record(reader, collection, id)?,
            Kind::Directory => directory::validate_record(reader, collection, id)?,
            Kind::Ledger => ledger::validate_record(reader, collection, id)?,
        }
    }
    Ok(())
}

/// One signed blob of a root map, or `None` if there is none.
pub fn signed_blob(
    doc: &automerge::AutoCommit,
    collection: &str,
    id: &str,
) -> Result<Option<Vec<u8>>, SchemaError> {
    Ok(one_record::<autosurgeon::bytes::ByteVec>(doc, collection, id)?.map(Into::into))
}

/// Every id of a root map (empty if the map is missing).
pub fn record_ids(doc: &automerge::AutoCommit, collection: &str) -> Vec<String> {
    use automerge::ReadDoc as _;
    match autosurgeon::ReadDoc::get(doc, &ROOT, collection) {
        Ok(Some((_, obj))) => doc.keys(&obj).collect(),
        _ => Vec::new(),
    }
}

/// One record of a root map, or `None` if it was deleted.
fn one_record<T: Hydrate>(
    doc: &impl ReadDoc,
    collection: &str,
    id: &str,
) -> Result<Option<T>, SchemaError> {
    let obj = root_map(doc, collection)?;
    match doc.get(&obj, id) {
        Ok(None) => return Ok(None),
        Ok(Some(_)) => {}
        Err(e) => {
            return Err(SchemaError::Invalid {
                path: format!("{collection}/{id}"),
                reason: e.to_string(),
            });
        }
    }
    autosurgeon::hydrate_prop(doc, &obj, id)
        .map(Some)
        .map_err(|source| SchemaError::Hydrate {
            path: format!("{collection}/{id}"),
            source: Box::new(source),
        })
}

fn unknown_collection(collection: &str) -> SchemaError {
    SchemaError::Invalid {
        path: collection.to_owned(),
        reason: "not a collection of this kind".to_owned(),
    }
}

pub fn validate(kind: Kind, doc: &impl automerge::ReadDoc) -> Result<(), SchemaError> {
    match kind {
        Kind::Convention => convention::hydrate(doc).map(drop),
        Kind::Minutes => minutes::hydrate(doc).map(drop),
        Kind::TaskList => tasks::hydrate(doc).map(drop),
        Kind::VisitLog => visits::hydrate(doc).map(drop),
        Kind::Directory => directory::hydrate(doc).map(drop),
        Kind::Ledger => ledger::hydrate(doc).map(drop),
    }
}

/// The document does not match its kind's schema. `path` is slash-separated from the root,
/// e.g. `tasks/t-17`.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("missing {path}")]
    Missing { path: String },
    #[error("{path}: expected {expected}, found {found}")]
    WrongType {
        path: String,
        expected: &'static str,
        found: String,
    },
    #[error("{path}: {source}")]
    Hydrate {
        path: String,
        #[source]
        source: Box<autosurgeon::HydrateError>,
    },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
}

/// An edit was refused; the document is unchanged.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("no {collection} record {id:?}")]
    UnknownRecord {
        collection: &'static str,
        id: String,
    },
    #[error("{collection} record {id:?} already exists")]
    AlreadyExists {
        collection: &'static str,
        id: String,
    },
    /// Published minutes are a public record: their decisions no longer change.
    #[error("the minutes are published; decisions can no longer change")]
    Published,
    #[error("document does not match its schema: {0}")]
    Schema(#[from] SchemaError),
    #[error("automerge: {0}")]
    Automerge(String),
}

impl From<autosurgeon::ReconcileError> for EditError {
    fn from(e: autosurgeon::ReconcileError) -> Self {
        EditError::Automerge(e.to_string())
    }
}

impl From<automerge::AutomergeError> for EditError {
    fn from(e: automerge::AutomergeError) -> Self {
        EditError::Automerge(e.to_string())
    }
}

/// A string that names none of an enumeration's values (from `FromStr`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?}; expected one of: {}", allowed.join(", "))]
pub struct UnknownValue {
    pub what: &'static str,
    pub value: String,
    pub allowed: Vec<&'static str>,
}

impl UnknownValue {
    fn new(what: &'static str, value: &str, allowed: impl Iterator<Item = &'static str>) -> Self {
        UnknownValue {
            what,
            value: value.to_owned(),
            allowed: allowed.collect(),
        }
    }

    fn expected(&self) -> String {
        format!("{} ({})", self.what, self.allowed.join(" | "))
    }
}

// ---------------------------------------------------------------------------------------------
// Reading helpers. Everything here treats the document as untrusted input.

fn describe(value: &Value<'_>) -> String {
    match value {
        Value::Object(ObjType::Map) => "map".into(),
        Value::Object(ObjType::Table) => "table".into(),
        Value::Object(ObjType::List) => "list".into(),
        Value::Object(ObjType::Text) => "text".into(),
        Value::Scalar(s) => format!("scalar {s}"),
    }
}

/// The map object stored at `parent[key]`, or the schema error that says why it is not there.
fn map_at(doc: &impl ReadDoc, parent: &ObjId, key: &str, path: &str) -> Result<ObjId, SchemaError> {
    match doc.get(parent, key) {
        Ok(Some((Value::Object(ObjType::Map), id))) => Ok(id),
        Ok(Some((other, _))) => Err(SchemaError::WrongType {
            path: path.to_owned(),
            expected: "map",
            found: describe(&other),
        }),
        Ok(None) => Err(SchemaError::Missing {
            path: path.to_owned(),
        }),
        Err(e) => Err(SchemaError::Invalid {
            path: path.to_owned(),
            reason: e.to_string(),
        }),
    }
}

/// A root-level map such as `tasks` or `entries`.
fn root_map(doc: &impl ReadDoc, key: &str) -> Result<ObjId, SchemaError> {
    map_at(doc, &ROOT, key, key)
}

/// Hydrates every record of the root map `key`, naming the failing record in the error.
fn records<T: Hydrate>(doc: &impl ReadDoc, key: &str) -> Result<BTreeMap<String, T>, SchemaError> {
    let obj = root_map(doc, key)?;
    let ids: Vec<String> = doc
        .map_range(&obj, ..)
        .map(|item| item.key.into_owned())
        .collect();
    let mut out = BTreeMap::new();
    for id in ids {
        let value = autosurgeon::hydrate_prop(doc, &obj, id.as_str()).map_err(|source| {
            SchemaError::Hydrate {
                path: format!("{key}/{id}"),
                source: Box::new(source),
            }
        })?;
        out.insert(id, value);
    }
    Ok(out)
}

/// Opaque blobs (certificates, revocations, attestations) stored as Automerge bytes.
fn blobs(doc: &impl ReadDoc, key: &str) -> Result<BTreeMap<String, Vec<u8>>, SchemaError> {
    Ok(records::<autosurgeon::bytes::ByteVec>(doc, key)?
        .into_iter()
        .map(|(id, bytes)| (id, bytes.into()))
        .collect())
}

/// A required root-level value.
fn root_value<T: Hydrate>(doc: &impl ReadDoc, key: &str) -> Result<T, SchemaError> {
    match doc.get(&ROOT, key) {
        Ok(Some(_)) => {}
        Ok(None) => {
            return Err(SchemaError::Missing {
                path: key.to_owned(),
            });
        }
        Err(e) => {
            return Err(SchemaError::Invalid {
                path: key.to_owned(),
                reason: e.to_string(),
            });
        }
    }
    autosurgeon::hydrate_prop(doc, &ROOT, key).map_err(|source| SchemaError::Hydrate {
        path: key.to_owned(),
        source: Box::new(source),
    })
}

// ---------------------------------------------------------------------------------------------
// Writing helpers.

/// Creates the empty root maps of a kind. Refuses a document that already has them, so a second
/// `init` cannot replace a populated map with an empty rival.
fn init_maps(doc: &mut automerge::AutoCommit, keys: &[&'static str]) -> Result<(), EditError> {
    use automerge::transaction::Transactable;
    for key in keys {
        if doc.get(&ROOT, *key)?.is_some() {
            return Err(EditError::AlreadyExists {
                collection: "root",
                id: (*key).to_owned(),
            });
        }
    }
    for key in keys {
        doc.put_object(ROOT, *key, ObjType::Map)?;
    }
    Ok(())
}

/// The object of record `id` in the root map `collection`.
fn record_obj(doc: &impl ReadDoc, collection: &'static str, id: &str) -> Result<ObjId, EditError> {
    let map = root_map(doc, collection)?;
    match doc.get(&map, id)? {
        Some((Value::Object(ObjType::Map), obj)) => Ok(obj),
        Some((other, _)) => Err(SchemaError::WrongType {
            path: format!("{collection}/{id}"),
            expected: "map",
            found: describe(&other),
        }
        .into()),
        None => Err(EditError::UnknownRecord {
            collection,
            id: id.to_owned(),
        }),
    }
}

/// Hydrates record `id` of the root map `collection`.
fn record<T: Hydrate>(
    doc: &impl ReadDoc,
    collection: &'static str,
    id: &str,
) -> Result<T, EditError> {
    let obj = root_map(doc, collection)?;
    if doc.get(&obj, id)?.is_none() {
        return Err(EditError::UnknownRecord {
            collection,
            id: id.to_owned(),
        });
    }
    autosurgeon::hydrate_prop(doc, &obj, id).map_err(|source| {
        EditError::Schema(SchemaError::Hydrate {
            path: format!("{collection}/{id}"),
            source: Box::new(source),
        })
    })
}

/// Writes a new record under a fresh id; an id already in use is refused rather than merged into.
fn insert_record<R: Reconcile>(
    doc: &mut automerge::AutoCommit,
    collection: &'static str,
    id: &str,
    value: &R,
) -> Result<(), EditError> {
    check_id(id)?;
    let map = root_map(doc, collection)?;
    if doc.get(&map, id)?.is_some() {
        return Err(EditError::AlreadyExists {
            collection,
            id: id.to_owned(),
        });
    }
    autosurgeon::reconcile_prop(doc, &map, id, value)?;
    Ok(())
}

/// Writes one field of an existing record and nothing else.
fn put_field<R: Reconcile>(
    doc: &mut automerge::AutoCommit,
    collection: &'static str,
    id: &str,
    field: &str,
    value: &R,
) -> Result<(), EditError> {
    let obj = record_obj(doc, collection, id)?;
    autosurgeon::reconcile_prop(doc, &obj, field, value)?;
    Ok(())
}

/// Deletes record `id` of the root map `collection`.
fn delete_record(
    doc: &mut automerge::AutoCommit,
    collection: &'static str,
    id: &str,
) -> Result<(), EditError> {
    use automerge::transaction::Transactable;
    let map = root_map(doc, collection)?;
    if doc.get(&map, id)?.is_none() {
        return Err(EditError::UnknownRecord {
            collection,
            id: id.to_owned(),
        });
    }
    doc.delete(&map, id)?;
    Ok(())
}

/// Writes an opaque blob. Blobs are signed and immutable: writing the same bytes again is a
/// no-op, different bytes under a used id are refused.
fn put_blob(
    doc: &mut automerge::AutoCommit,
    collection: &'static str,
    id: &str,
    bytes: &[u8],
) -> Result<(), EditError> {
    use automerge::transaction::Transactable;
    check_id(id)?;
    if bytes.is_empty() {
        return Err(invalid("bytes", "must not be empty"));
    }
    let map = root_map(doc, collection)?;
    match doc.get(&map, id)? {
        None => {
            doc.put(&map, id, bytes.to_vec())?;
            Ok(())
        }
        Some((Value::Scalar(s), _)) if s.as_bytes() == Some(bytes) => Ok(()),
        Some(_) => Err(EditError::AlreadyExists {
            collection,
            id: id.to_owned(),
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// Argument checks.

fn invalid(field: &'static str, reason: impl Into<String>) -> EditError {
    EditError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// Record ids are map keys: non-empty, no surrounding whitespace, no control characters, and a
/// bound on length so one peer cannot bloat every document.
const ID_BYTES_MAX: usize = 128;

fn check_id(id: &str) -> Result<(), EditError> {
    if id.is_empty() {
        return Err(invalid("id", "must not be empty"));
    }
    if id.len() > ID_BYTES_MAX {
        return Err(invalid("id", format!("longer than {ID_BYTES_MAX} bytes")));
    }
    if id.trim() != id || id.chars().any(char::is_control) {
        return Err(invalid(
            "id",
            "must not contain control characters or surrounding spaces",
        ));
    }
    Ok(())
}

fn non_empty(field: &'static str, value: &str) -> Result<(), EditError> {
    if value.trim().is_empty() {
        Err(invalid(field, "must not be empty"))
    } else {
        Ok(())
    }
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn digits(s: &str) -> Option<u32> {
    if s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

/// `(year, month)` of a `"YYYY-MM"` string.
fn parse_month(s: &str) -> Option<(u32, u32)> {
    let (y, m) = s.split_once('-')?;
    if y.len() != 4 || m.len() != 2 {
        return None;
    }
    let (year, month) = (digits(y)?, digits(m)?);
    (1..=12).contains(&month).then_some((year, month))
}

/// Whether `s` is a real calendar date written `"YYYY-MM-DD"`.
fn is_date(s: &str) -> bool {
    let Some((ym, d)) = s.rsplit_once('-') else {
        return false;
    };
    let (Some((year, month)), Some(day)) = (parse_month(ym), digits(d)) else {
        return false;
    };
    d.len() == 2 && (1..=days_in_month(year, month)).contains(&day)
}

fn check_date(field: &'static str, s: &str) -> Result<(), EditError> {
    if is_date(s) {
        Ok(())
    } else {
        Err(invalid(field, format!("{s:?} is not a date YYYY-MM-DD")))
    }
}

fn check_month(field: &'static str, s: &str) -> Result<(), EditError> {
    if parse_month(s).is_some() {
        Ok(())
    } else {
        Err(invalid(field, format!("{s:?} is not a month YYYY-MM")))
    }
}

/// A date read from a document; a bad one is a schema violation at `path`.
fn schema_date(path: impl Fn() -> String, s: &str) -> Result<(), SchemaError> {
    if is_date(s) {
        Ok(())
    } else {
        Err(SchemaError::Invalid {
            path: path(),
            reason: format!("{s:?} is not a date YYYY-MM-DD"),
        })
    }
}

/// Deterministic documents and the convergence check shared by every kind's tests.
#[cfg(test)]
mod tests_support {
    use std::fmt::Debug;

    use automerge::{ActorId, AutoCommit};

    /// A fresh document with a fixed actor, so snapshots and conflict winners are stable.
    pub(super) fn new_doc() -> AutoCommit {
        AutoCommit::new().with_actor(ActorId::from([1u8; 16].as_slice()))
    }

    /// A fork of `doc` acting as peer `n` (`n` != 1).
    pub(super) fn fork(doc: &mut AutoCommit, n: u8) -> AutoCommit {
        doc.commit();
        doc.fork().with_actor(ActorId::from([n; 16].as_slice()))
    }

    /// Three peers fork `new()`'s document and make edits `0..n_edits` (edit `i` on peer
    /// `i % 3`, one change each, so a peer's changes depend on each other). Applying all the
    /// changes to the base in the order `order` (a permutation of `0..n_edits`, missing
    /// dependencies queue inside Automerge) must give the same heads and the same hydrated
    /// state as merging the peers.
    pub(super) fn converges<S: Debug, E: Debug>(
        new: impl Fn() -> AutoCommit,
        edit: impl Fn(&mut AutoCommit, usize),
        n_edits: usize,
        order: &[usize],
        hydrate: impl Fn(&AutoCommit) -> Result<S, E>,
    ) {
        let mut base = new();
        base.commit();
        let base_heads = base.get_heads();
        let mut peers: Vec<AutoCommit> = (0..3).map(|p| fork(&mut base, 10 + p)).collect();
        for i in 0..n_edits {
            let peer = &mut peers[i % 3];
            edit(peer, i);
            peer.commit();
        }
        let changes: Vec<automerge::Change> = peers
            .iter_mut()
            .flat_map(|peer| peer.get_changes(&base_heads))
            .collect();

        let mut merged = base.fork();
        for peer in &mut peers {
            merged.merge(peer).expect("merge");
        }
        let mut applied = base.fork();
        for &i in order.iter().filter(|&&i| i < changes.len()) {
            applied
                .apply_changes([changes[i].clone()])
                .expect("apply change");
        }
        assert_eq!(applied.get_heads(), merged.get_heads());
        let want = format!("{:#?}", hydrate(&merged).expect("hydrate merged"));
        let got = format!("{:#?}", hydrate(&applied).expect("hydrate applied"));
        assert_eq!(got, want);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    mod reader {
        use automerge::transaction::Transactable;
        use automerge::{AutoCommit, ObjType, ROOT, ReadDoc as _};
        use proptest::prelude::*;

        use super::super::Reader;
        use super::super::tests_support::{fork, new_doc};

        /// Every value reachable from the root, read through autosurgeon's `ReadDoc` on `r`.
        fn dump(r: &impl autosurgeon::ReadDoc, obj: &automerge::ObjId, out: &mut Vec<String>) {
            let keys: Vec<String> = r.map_range(obj, ..).map(|i| i.key.into_owned()).collect();
            for k in keys.iter().map(String::as_str).chain(["absent"]) {
                let got = r.get(obj, k).expect("get");
                out.push(format!("{obj}/{k} = {got:?}"));
                match got {
                    Some((automerge::Value::Object(ObjType::Map), id)) => dump(r, &id, out),
                    Some((automerge::Value::Object(ObjType::List), id)) => {
                        let n = r.length(&id);
                        out.push(format!("{id} len {n}"));
                        for i in 0..=n {
                            out.push(format!("{id}[{i}] = {:?}", r.get(&id, i).expect("get")));
                        }
                    }
                    _ => {}
                }
            }
        }

        /// Records `r0`…`r{n}` with a scalar, a nested map and a list, edited concurrently by
        /// two peers (conflicting puts, deletes, list inserts) and merged.
        fn doc(ops: &[(u8, u8, u8)]) -> AutoCommit {
            let mut base = new_doc();
            let recs = base.put_object(ROOT, "recs", ObjType::Map).expect("put");
            base.put(ROOT, "month", "2025-11").expect("put");
            let mut peers = [fork(&mut base, 2), fork(&mut base, 3)];
            for &(peer, rec, op) in ops {
                let d = &mut peers[usize::from(peer % 2)];
                let key = format!("r{}", rec % 6);
                let rec_obj = match d.get(&recs, key.as_str()).expect("get") {
                    Some((automerge::Value::Object(ObjType::Map), id)) => id,
                    _ => {
                        let o = d
                            .put_object(&recs, key.as_str(), ObjType::Map)
                            .expect("put");
                        d.put_object(&o, "needs", ObjType::List).expect("put");
                        o
                    }
                };
                match op % 4 {
                    0 => d
                        .put(&rec_obj, "note", format!("p{peer}-{op}"))
                        .expect("put"),
                    1 => d.delete(&rec_obj, "note").expect("delete"),
                    2 => {
                        if let Some((_, list)) = d.get(&rec_obj, "needs").expect("get") {
                            d.insert(&list, 0, i64::from(op)).expect("insert");
                        }
                    }
                    _ => d.delete(&recs, key.as_str()).expect("delete"),
                }
                d.commit();
            }
            let [mut a, mut b] = peers;
            a.merge(&mut b).expect("merge");
            a
        }

        proptest! {
            /// The sweeping reader answers exactly as key-by-key reads do, also for conflicts,
            /// deleted keys, lists, and partially read maps.
            #[test]
            fn sweeping_reader_reads_like_gets(
                ops in proptest::collection::vec((0u8..2, 0u8..6, 0u8..8), 0..40),
            ) {
                let d = doc(&ops);
                let mut want = Vec::new();
                dump(&d, &ROOT, &mut want);
                let mut got = Vec::new();
                dump(&Reader::new(&d), &ROOT, &mut got);
                prop_assert_eq!(&got, &want);
                let partial = Reader::new(&d);
                partial.partial_root_map("recs");
                let mut got = Vec::new();
                dump(&partial, &ROOT, &mut got);
                prop_assert_eq!(&got, &want);
                // A text-typed lookup on a map, and a map-typed one on a list, are refused or
                // answered the same way.
                let r = Reader::new(&d);
                prop_assert_eq!(
                    format!("{:?}", autosurgeon::ReadDoc::get(&r, &ROOT, 0usize)),
                    format!("{:?}", d.get(ROOT, 0usize))
                );
            }
        }
    }

    #[test]
    fn dates_and_months() {
        for ok in ["2024-02-29", "2000-02-29", "2025-12-31", "2025-01-01"] {
            assert!(is_date(ok), "{ok}");
        }
        for bad in [
            "2025-02-29",
            "1900-02-29",
            "2025-13-01",
            "2025-00-10",
            "2025-04-31",
            "2025-4-01",
            "25-04-01",
            "2025-04-1",
            "2025/04/01",
            "",
            "+025-04-01",
            "2025-04-01 ",
        ] {
            assert!(!is_date(bad), "{bad}");
        }
        assert_eq!(parse_month("2025-11"), Some((2025, 11)));
        assert_eq!(parse_month("2025-1"), None);
        assert_eq!(parse_month("2025-11-01"), None);
    }

    #[test]
    fn ids() {
        assert!(check_id("t-1").is_ok());
        assert!(check_id("户-302").is_ok());
        for bad in ["", " x", "x\n", &"x".repeat(ID_BYTES_MAX + 1)] {
            assert!(
                matches!(check_id(bad), Err(EditError::Invalid { field: "id", .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn kind_names_round_trip() {
        for kind in Kind::ALL {
            assert_eq!(kind.as_str().parse::<Kind>(), Ok(*kind));
            let json = serde_json::to_string(kind).expect("serialize");
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
        }
        let err = "tasklist".parse::<Kind>().unwrap_err();
        expect_test::expect![[r#"unknown a document kind "tasklist"; expected one of: convention, minutes, task-list, visit-log, directory, ledger"#]]
            .assert_eq(&err.to_string());
        expect_test::expect!["任务清单"].assert_eq(Kind::TaskList.label_zh());
    }

    #[test]
    fn validate_rejects_empty_and_foreign_documents() {
        let empty = automerge::AutoCommit::new();
        for kind in Kind::ALL {
            assert!(
                matches!(validate(*kind, &empty), Err(SchemaError::Missing { .. })),
                "{kind}"
            );
        }
        let mut doc = automerge::AutoCommit::new();
        ledger::init(&mut doc).expect("init");
        assert!(validate(Kind::Ledger, &doc).is_ok());
        let err = validate(Kind::TaskList, &doc).unwrap_err();
        expect_test::expect!["missing tasks"].assert_eq(&err.to_string());
    }

    /// Hydration goes through `automerge::ReadDoc`, so it works on a plain `Automerge`, on a
    /// fork at old heads (how the diff since filing is taken) and behind an opaque `impl`.
    #[test]
    fn hydrate_reads_any_automerge_read_doc() {
        fn opaque(doc: &automerge::AutoCommit) -> &impl automerge::ReadDoc {
            doc
        }
        let mut doc = tests_support::new_doc();
        convention::init(&mut doc).expect("init");
        convention::add_article(&mut doc, "a-1", 1, "总则", "第一版").expect("add");
        doc.commit();
        let filed = doc.get_heads();
        convention::edit_article_text(&mut doc, "a-1", "第二版").expect("edit");
        doc.commit();

        let plain = automerge::Automerge::load(&doc.save()).expect("load");
        let at_filing = doc.fork_at(&filed).expect("fork");
        let text = |c: convention::Convention| convention::articles_text(&c);
        assert_eq!(
            text(convention::hydrate(&plain).expect("hydrate")),
            "第1条 总则\n第二版\n"
        );
        assert_eq!(
            text(convention::hydrate(&at_filing).expect("hydrate")),
            "第1条 总则\n第一版\n"
        );
        assert!(validate(Kind::Convention, opaque(&doc)).is_ok());
    }

    #[test]
    fn init_twice_is_refused() {
        let mut doc = automerge::AutoCommit::new();
        ledger::init(&mut doc).expect("init");
        let err = ledger::init(&mut doc).unwrap_err();
        expect_test::expect![[r#"root record "attestations" already exists"#]]
            .assert_eq(&err.to_string());
    }
}
