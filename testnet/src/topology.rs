//! The topology file: which district, streets and communities a local network has, in TOML an
//! administrator can read and edit, and the provisioning plan (units and the people who work on
//! each node) made from it.
//!
//! ```toml
//! network = "铁东区邻里网"
//! [district]
//! id = "tiedong"
//! name = "铁东区"
//! [[streets]]
//! id = "jiefang"
//! name = "解放街道"
//! communities = [{ id = "shengli", name = "胜利社区" }]
//! [generate]            # optional: fill up to these counts with generated names
//! streets = 10
//! communities_per_street = 30
//! ```
//!
//! A network has one top unit (its genesis names it), so a topology has exactly one district.
//! People follow the hierarchy's work (DOMAIN.md): the district has civil affairs' reviewer
//! (初审) and the government's approver (审批); a street has the approver who files its
//! communities' conventions (备案); a community has its workers, who visit households.

use std::collections::BTreeSet;
use std::path::Path;

use linli_crdt_model::cert::Role;
use linli_crdt_model::unit::{Unit, UnitId, UnitKind};
use linli_node::setup::{PlanPerson, PlanUnit};
use serde::{Deserialize, Serialize};

use crate::Error;

/// Most units a topology may describe: every one is an OS process on this machine.
pub const UNITS_MAX: usize = 2_000;

/// A parsed topology file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// The network's name, as the genesis records it.
    pub network: String,
    pub district: NamedUnit,
    #[serde(default)]
    pub streets: Vec<Street>,
    /// Community workers (分包 households); default: [`default_workers`].
    #[serde(default)]
    pub workers: Vec<Worker>,
    /// Fill the streets and communities up to these counts with generated names.
    #[serde(default)]
    pub generate: Option<Generate>,
    /// Node settings for every node of the testnet.
    #[serde(default)]
    pub node: NodeSettings,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedUnit {
    /// One path segment: a-z, 0-9 and '-'.
    pub id: String,
    /// The display name (解放街道).
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Street {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub communities: Vec<NamedUnit>,
}

/// A community worker: `handle` names the key file (`keys/people/<handle>.key`) and is what
/// `--as` takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Worker {
    pub handle: String,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Generate {
    pub streets: usize,
    pub communities_per_street: usize,
}

/// What every testnet node's `config.toml` gets beyond the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeSettings {
    pub anti_entropy_interval_ms: u64,
    pub redial_interval_ms: u64,
    /// How often the district signs a checkpoint; 0 turns it off.
    pub district_checkpoint_interval_ms: u64,
}

impl Default for NodeSettings {
    fn default() -> Self {
        NodeSettings {
            anti_entropy_interval_ms: 1_000,
            redial_interval_ms: 500,
            district_checkpoint_interval_ms: 60_000,
        }
    }
}

/// Workers of every community unless the topology names its own: 王芳 and 李强 first, as the
/// examples in the docs use them.
pub fn default_workers() -> Vec<Worker> {
    [
        ("wangfang", "王芳"),
        ("liqiang", "李强"),
        ("zhangmin", "张敏"),
        ("liujing", "刘静"),
        ("chenjie", "陈杰"),
    ]
    .into_iter()
    .map(|(handle, name)| Worker {
        handle: handle.to_owned(),
        name: name.to_owned(),
    })
    .collect()
}

/// Names for generated streets and communities: real-looking, not real places.
const STREET_NAMES: &[(&str, &str)] = &[
    ("jiefang", "解放"),
    ("zhanqian", "站前"),
    ("yuanlin", "园林"),
    ("heping", "和平"),
    ("xinhua", "新华"),
    ("renmin", "人民"),
    ("dongshan", "东山"),
    ("xishan", "西山"),
    ("nanhu", "南湖"),
    ("beiling", "北岭"),
    ("changjiang", "长江"),
    ("huanghe", "黄河"),
    ("minzhu", "民主"),
    ("wenhua", "文化"),
    ("gongnong", "工农"),
    ("jianshe", "建设"),
];

const COMMUNITY_NAMES: &[(&str, &str)] = &[
    ("shengli", "胜利"),
    ("qianjin", "前进"),
    ("heping", "和平"),
    ("xingfu", "幸福"),
    ("yangguang", "阳光"),
    ("huayuan", "花园"),
    ("jinxiu", "锦绣"),
    ("anning", "安宁"),
    ("kangle", "康乐"),
    ("fuqiang", "富强"),
    ("mingde", "明德"),
    ("chunhui", "春晖"),
    ("lanting", "兰亭"),
    ("songbai", "松柏"),
    ("taoyuan", "桃源"),
    ("qingnian", "青年"),
    ("tuanjie", "团结"),
    ("youyi", "友谊"),
    ("xinyuan", "新苑"),
    ("lijing", "丽景"),
];

impl Topology {
    pub fn parse(text: &str) -> Result<Topology, String> {
        let mut t: Topology = toml::from_str(text).map_err(|e| e.to_string())?;
        t.expand()?;
        t.validate()?;
        Ok(t)
    }

    pub fn load(path: &Path) -> Result<Topology, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        Topology::parse(&text).map_err(|detail| Error::Topology {
            path: path.display().to_string(),
            detail,
        })
    }

    /// Apply `[generate]`: add streets and communities until the counts are reached.
    fn expand(&mut self) -> Result<(), String> {
        let Some(g) = self.generate else {
            return Ok(());
        };
        let total = 1 + g.streets * (1 + g.communities_per_street);
        if total > UNITS_MAX {
            return Err(format!(
                "[generate] asks for {total} units; a testnet runs at most {UNITS_MAX} processes"
            ));
        }
        let pick = |pool: &[(&str, &str)], i: usize| -> (String, String, usize) {
            let (id, name) = pool[i % pool.len()];
            (id.to_owned(), name.to_owned(), i / pool.len())
        };
        let mut i = 0;
        while self.streets.len() < g.streets {
            let (id, name, round) = pick(STREET_NAMES, i);
            i += 1;
            let (id, name) = numbered(&id, &name, round);
            if self.streets.iter().any(|s| s.id == id) {
                continue;
            }
            self.streets.push(Street {
                id,
                name: format!("{name}街道"),
                communities: Vec::new(),
            });
        }
        for street in &mut self.streets {
            let mut i = 0;
            while street.communities.len() < g.communities_per_street {
                let (id, name, round) = pick(COMMUNITY_NAMES, i);
                i += 1;
                let (id, name) = numbered(&id, &name, round);
                if street.communities.iter().any(|c| c.id == id) {
                    continue;
                }
                street.communities.push(NamedUnit {
                    id,
                    name: format!("{name}社区"),
                });
            }
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), String> {
        let mut seen = BTreeSet::new();
        let units = self.units().map_err(|e| e.to_string())?;
        if units.len() > UNITS_MAX {
            return Err(format!(
                "{} units; a testnet runs at most {UNITS_MAX} processes",
                units.len()
            ));
        }
        for u in &units {
            if !seen.insert(u.id.clone()) {
                return Err(format!("unit {} appears twice", u.id));
            }
            if u.name.trim().is_empty() {
                return Err(format!("unit {} has no name", u.id));
            }
        }
        let mut handles = BTreeSet::new();
        for w in self.workers() {
            if !handles.insert(w.handle.clone()) {
                return Err(format!("worker handle {} appears twice", w.handle));
            }
            if ["admin", "root", "approver", "reviewer"].contains(&w.handle.as_str()) {
                return Err(format!(
                    "worker handle {} is reserved for the unit's officers",
                    w.handle
                ));
            }
        }
        Ok(())
    }

    /// The workers of every community.
    pub fn workers(&self) -> Vec<Worker> {
        if self.workers.is_empty() {
            default_workers()
        } else {
            self.workers.clone()
        }
    }

    /// Every unit, parents before children: the district, then each street followed by its
    /// communities.
    pub fn units(&self) -> Result<Vec<Unit>, linli_crdt_model::unit::UnitIdError> {
        let top = UnitId::new(&self.district.id)?;
        let mut out = vec![Unit {
            id: top.clone(),
            kind: UnitKind::District,
            name: self.district.name.clone(),
        }];
        for s in &self.streets {
            let sid = top.child(&s.id)?;
            out.push(Unit {
                id: sid.clone(),
                kind: UnitKind::Street,
                name: s.name.clone(),
            });
            for c in &s.communities {
                out.push(Unit {
                    id: sid.child(&c.id)?,
                    kind: UnitKind::Community,
                    name: c.name.clone(),
                });
            }
        }
        Ok(out)
    }

    /// The provisioning plan: units with their people.
    pub fn plan(&self) -> Result<Vec<PlanUnit>, linli_crdt_model::unit::UnitIdError> {
        let person = |handle: &str, holder: String, role| PlanPerson {
            handle: handle.to_owned(),
            holder,
            role,
        };
        let workers = self.workers();
        Ok(self
            .units()?
            .into_iter()
            .map(|unit| {
                let people = match unit.kind {
                    UnitKind::District => vec![
                        person("reviewer", "民政局 刘审".to_owned(), Role::Reviewer),
                        person("approver", "区政府 陈批".to_owned(), Role::Approver),
                    ],
                    UnitKind::Street => vec![person(
                        "approver",
                        format!("{} 备案员", unit.name),
                        Role::Approver,
                    )],
                    UnitKind::Community | UnitKind::Grid => workers
                        .iter()
                        .map(|w| person(&w.handle, w.name.clone(), Role::Writer))
                        .collect(),
                };
                PlanUnit { unit, people }
            })
            .collect())
    }
}

/// The second round of a name pool gets a number: `heping2` / 和平二.
fn numbered(id: &str, name: &str, round: usize) -> (String, String) {
    const ZH: [&str; 10] = ["", "二", "三", "四", "五", "六", "七", "八", "九", "十"];
    if round == 0 {
        (id.to_owned(), name.to_owned())
    } else {
        let zh = ZH.get(round).copied().unwrap_or("");
        let zh = if zh.is_empty() {
            (round + 1).to_string()
        } else {
            zh.to_owned()
        };
        (format!("{id}{}", round + 1), format!("{name}{zh}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_up_to_the_counts_keeping_named_units() {
        let t = Topology::parse(
            "network = \"n\"\n[district]\nid = \"tiedong\"\nname = \"铁东区\"\n[[streets]]\nid = \"jiefang\"\nname = \"解放街道\"\ncommunities = [{ id = \"shengli\", name = \"胜利社区\" }]\n[generate]\nstreets = 20\ncommunities_per_street = 25\n",
        )
        .unwrap();
        let units = t.units().unwrap();
        assert_eq!(units.len(), 1 + 20 * 26);
        assert_eq!(units[2].id.as_str(), "tiedong/jiefang/shengli");
        assert!(units.iter().any(|u| u.name == "和平二社区"), "{units:?}");
    }

    #[test]
    fn unknown_keys_and_duplicates_are_refused() {
        let err = Topology::parse(
            "network = \"n\"\nnetwrok = 1\n[district]\nid = \"a\"\nname = \"甲\"\n",
        )
        .unwrap_err();
        assert!(err.contains("netwrok"), "{err}");
        let err = Topology::parse(
            "network = \"n\"\n[district]\nid = \"a\"\nname = \"甲\"\n[[streets]]\nid = \"b\"\nname = \"乙\"\n[[streets]]\nid = \"b\"\nname = \"丙\"\n",
        )
        .unwrap_err();
        assert!(err.contains("twice"), "{err}");
    }

    #[test]
    fn shipped_topologies_parse() {
        for (file, n) in [("demo.toml", 7), ("city.toml", 13)] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../config/testnet")
                .join(file);
            let t = Topology::load(&path).unwrap();
            assert_eq!(t.units().unwrap().len(), n, "{file}");
        }
    }
}
