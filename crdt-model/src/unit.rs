//! Units: the district, street, community (and later grid) that own documents and certify keys.
//!
//! A unit id is a path (`tiedong/jiefang/shengli`): the hierarchy is in the id itself, so "is this
//! unit above that one" needs no lookup and gives every node the same answer. Display names are
//! Chinese and live beside the id (三级联动, DOMAIN.md; seed 003 §二).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest unit path accepted, in bytes.
pub const UNIT_ID_BYTES_MAX: usize = 128;
/// Deepest hierarchy accepted (district / street / community / grid, with room above).
pub const UNIT_DEPTH_MAX: usize = 6;

/// A unit's stable path id: lowercase ASCII segments `[a-z0-9-]` joined by `/`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UnitId(String);

/// What level of the hierarchy a unit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnitKind {
    District,
    Street,
    Community,
    Grid,
}

/// A unit: id, level and display name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unit {
    pub id: UnitId,
    pub kind: UnitKind,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitIdError {
    #[error("unit id {0:?} is empty or has an empty segment")]
    Empty(String),
    #[error("unit id {0:?} may only use a-z, 0-9 and '-' in its segments, separated by '/'")]
    BadChar(String),
    #[error("unit id {id:?} is longer than {max} bytes", max = UNIT_ID_BYTES_MAX)]
    TooLong { id: String },
    #[error("unit id {id:?} is deeper than {max} levels", max = UNIT_DEPTH_MAX)]
    TooDeep { id: String },
}

impl UnitId {
    pub fn new(s: &str) -> Result<Self, UnitIdError> {
        if s.len() > UNIT_ID_BYTES_MAX {
            return Err(UnitIdError::TooLong { id: s.to_owned() });
        }
        let segments: Vec<&str> = s.split('/').collect();
        if segments.len() > UNIT_DEPTH_MAX {
            return Err(UnitIdError::TooDeep { id: s.to_owned() });
        }
        for seg in &segments {
            if seg.is_empty() {
                return Err(UnitIdError::Empty(s.to_owned()));
            }
            if !seg
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return Err(UnitIdError::BadChar(s.to_owned()));
            }
        }
        Ok(UnitId(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Number of path segments: 1 for the top unit.
    pub fn depth(&self) -> usize {
        self.0.split('/').count()
    }

    /// The unit directly above, if any.
    pub fn parent(&self) -> Option<UnitId> {
        self.0.rsplit_once('/').map(|(p, _)| UnitId(p.to_owned()))
    }

    /// A child unit id one level down.
    pub fn child(&self, segment: &str) -> Result<UnitId, UnitIdError> {
        UnitId::new(&format!("{}/{}", self.0, segment))
    }

    /// True if `self` is `other` or any unit above it.
    pub fn is_at_or_above(&self, other: &UnitId) -> bool {
        other.0 == self.0
            || (other.0.len() > self.0.len()
                && other.0.starts_with(&self.0)
                && other.0.as_bytes()[self.0.len()] == b'/')
    }

    /// This unit and every unit above it, nearest first.
    pub fn chain(&self) -> Vec<UnitId> {
        let mut out = vec![self.clone()];
        let mut cur = self.parent();
        while let Some(p) = cur {
            cur = p.parent();
            out.push(p);
        }
        out
    }
}

impl fmt::Display for UnitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UnitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl FromStr for UnitId {
    type Err = UnitIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        UnitId::new(s)
    }
}

impl TryFrom<String> for UnitId {
    type Error = UnitIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        UnitId::new(&s)
    }
}

impl From<UnitId> for String {
    fn from(u: UnitId) -> String {
        u.0
    }
}

impl UnitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UnitKind::District => "district",
            UnitKind::Street => "street",
            UnitKind::Community => "community",
            UnitKind::Grid => "grid",
        }
    }

    /// The kind a unit of this kind must have above it; a district is the top and has none.
    pub fn parent_kind(self) -> Option<UnitKind> {
        match self {
            UnitKind::District => None,
            UnitKind::Street => Some(UnitKind::District),
            UnitKind::Community => Some(UnitKind::Street),
            UnitKind::Grid => Some(UnitKind::Community),
        }
    }

    pub fn label_zh(self) -> &'static str {
        match self {
            UnitKind::District => "区",
            UnitKind::Street => "街道",
            UnitKind::Community => "社区",
            UnitKind::Grid => "网格",
        }
    }
}

impl FromStr for UnitKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "district" => Ok(UnitKind::District),
            "street" => Ok(UnitKind::Street),
            "community" => Ok(UnitKind::Community),
            "grid" => Ok(UnitKind::Grid),
            other => Err(format!(
                "unknown unit kind {other:?}: expected district, street, community or grid"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ancestry_is_by_whole_segments() {
        let d = UnitId::new("tiedong").unwrap();
        let s = UnitId::new("tiedong/jiefang").unwrap();
        let c = UnitId::new("tiedong/jiefang/shengli").unwrap();
        let other = UnitId::new("tiedongx/jiefang").unwrap();
        assert!(d.is_at_or_above(&c));
        assert!(s.is_at_or_above(&c));
        assert!(c.is_at_or_above(&c));
        assert!(!c.is_at_or_above(&s));
        assert!(!d.is_at_or_above(&other));
        assert_eq!(c.chain(), vec![c.clone(), s.clone(), d.clone()]);
    }

    #[test]
    fn bad_ids_are_refused_with_a_reason() {
        assert!(matches!(UnitId::new(""), Err(UnitIdError::Empty(_))));
        assert!(matches!(UnitId::new("a//b"), Err(UnitIdError::Empty(_))));
        assert!(matches!(
            UnitId::new("Tiedong"),
            Err(UnitIdError::BadChar(_))
        ));
        assert!(matches!(UnitId::new("铁东"), Err(UnitIdError::BadChar(_))));
        assert!(matches!(
            UnitId::new("a/b/c/d/e/f/g"),
            Err(UnitIdError::TooDeep { .. })
        ));
        assert!(matches!(
            UnitId::new(&"a".repeat(200)),
            Err(UnitIdError::TooLong { .. })
        ));
    }
}
