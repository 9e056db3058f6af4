//! Creating data directories: a new network (`linli init`), a node joining one (`linli join`),
//! people's keys, and the registrations and certificates imported before a node first runs. Used by the CLI, the
//! testnet generator and the tests, so there is one way to lay out a data directory.

use std::path::Path;

use linli_crdt_model::cert::{CertBody, Certificate, Registration, RegistrationBody, Role};
use linli_crdt_model::genesis::Genesis;
use linli_crdt_model::keys::{PublicKey, SecretKey};
use linli_crdt_model::unit::{Unit, UnitId};

use crate::config::{Config, Layout};
use crate::engine::{self, Error};
use crate::keystore;
use crate::store::Store;

/// One year, the default certificate lifetime.
pub const YEAR_MS: i64 = 365 * 24 * 60 * 60 * 1000;

/// What `init` made.
#[derive(Debug, Clone)]
pub struct Initialized {
    pub genesis: Genesis,
    pub root: PublicKey,
    pub node: PublicKey,
}

fn fresh_dir(dir: &Path) -> Result<(), Error> {
    if dir.join("config.toml").exists() || dir.join("genesis.json").exists() {
        return Err(Error::Invalid(format!(
            "{} already holds a node (config.toml or genesis.json exists); choose an empty directory",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::Invalid(format!("cannot create {}: {e}", dir.display())))
}

fn write(path: &Path, text: &str) -> Result<(), Error> {
    std::fs::write(path, text)
        .map_err(|e| Error::Invalid(format!("cannot write {}: {e}", path.display())))
}

/// A new network: genesis with a fresh root key (kept as person `root` of the top unit's node,
/// the network's first administrator), and this node certified as the top unit's node.
pub fn init_network(
    dir: &Path,
    network_name: &str,
    top: Unit,
    config: Config,
    now_ms: i64,
) -> Result<Initialized, Error> {
    fresh_dir(dir)?;
    let layout = Layout::new(dir);
    let root = keystore::generate_key();
    let node = keystore::generate_key();
    let genesis = Genesis {
        network_name: network_name.to_owned(),
        top: top.clone(),
        root_keys: vec![root.public()],
        created_at_ms: now_ms,
    };
    genesis
        .validate()
        .map_err(|e| Error::Invalid(e.to_string()))?;
    keystore::write_key(&layout.node_key(), &node)?;
    keystore::write_key(&layout.people().join("root.key"), &root)?;
    write(
        &layout.genesis(),
        &serde_json::to_string_pretty(&genesis).expect("genesis serializes"),
    )?;
    write(&layout.config(), &config.to_toml())?;
    let cert = certify(
        &genesis,
        &root,
        node.public(),
        top.id,
        Role::Node,
        "节点".to_owned(),
        now_ms,
        YEAR_MS * 10,
    );
    import_offline(dir, &genesis, &[], &[cert])?;
    Ok(Initialized {
        genesis,
        root: root.public(),
        node: node.public(),
    })
}

/// A node joining an existing network: writes genesis, config and a fresh node key. The node
/// can run once an admin of its unit (or above) has certified the returned key and the
/// certificate is imported.
pub fn join(dir: &Path, genesis: &Genesis, config: Config) -> Result<PublicKey, Error> {
    fresh_dir(dir)?;
    genesis
        .validate()
        .map_err(|e| Error::Invalid(e.to_string()))?;
    let layout = Layout::new(dir);
    let node = keystore::generate_key();
    keystore::write_key(&layout.node_key(), &node)?;
    write(
        &layout.genesis(),
        &serde_json::to_string_pretty(genesis).expect("genesis serializes"),
    )?;
    write(&layout.config(), &config.to_toml())?;
    Store::open(&layout.store(), genesis.network_id())?;
    Ok(node.public())
}

/// Generate a key for a person who works on this node (`keys/people/<handle>.key`).
pub fn add_person(dir: &Path, handle: &str) -> Result<PublicKey, Error> {
    keystore::check_handle(handle)?;
    let key = keystore::generate_key();
    keystore::write_key(
        &Layout::new(dir).people().join(format!("{handle}.key")),
        &key,
    )?;
    Ok(key.public())
}

/// Write a certificate signed by `issuer`.
#[allow(
    clippy::too_many_arguments,
    reason = "each argument is one field of the certificate"
)]
pub fn certify(
    genesis: &Genesis,
    issuer: &SecretKey,
    subject: PublicKey,
    unit: UnitId,
    role: Role,
    holder: String,
    now_ms: i64,
    valid_ms: i64,
) -> Certificate {
    Certificate::issue(
        CertBody {
            network: genesis.network_id(),
            subject,
            unit,
            role,
            holder,
            issuer: issuer.public(),
            issued_at_ms: now_ms - 60_000,
            expires_at_ms: now_ms.saturating_add(valid_ms),
        },
        issuer,
    )
}

/// Write a registration of `unit` (below the top) signed by `issuer`: a root key or an admin of
/// its parent or above, whose certificate was issued by `at_ms`.
pub fn register(genesis: &Genesis, issuer: &SecretKey, unit: Unit, at_ms: i64) -> Registration {
    Registration::issue(
        RegistrationBody {
            network: genesis.network_id(),
            unit,
            issuer: issuer.public(),
            at_ms,
        },
        issuer,
    )
}

/// Put registrations and certificates into the store of a node that is not running (its first
/// certificate, or a renewal brought on a USB stick). Each is signature-checked first.
pub fn import_offline(
    dir: &Path,
    genesis: &Genesis,
    registrations: &[Registration],
    certs: &[Certificate],
) -> Result<(), Error> {
    let network = genesis.network_id();
    let store = Store::open(&Layout::new(dir).store(), network)?;
    for r in registrations {
        r.check(&network)?;
        store.put_registration(r)?;
    }
    for c in certs {
        c.check(&network)?;
        store.put_certificate(c)?;
    }
    store.flush()?;
    Ok(())
}

/// Read the genesis of a data directory.
pub fn genesis_of(dir: &Path) -> Result<Genesis, Error> {
    engine::read_genesis(&Layout::new(dir).genesis())
}

/// A unit to provision, with the people who work on its node besides its administrator.
#[derive(Debug, Clone)]
pub struct PlanUnit {
    pub unit: Unit,
    pub people: Vec<PlanPerson>,
}

#[derive(Debug, Clone)]
pub struct PlanPerson {
    /// File name of the key: `keys/people/<handle>.key`.
    pub handle: String,
    /// The person's name as the audit shows it (王芳).
    pub holder: String,
    pub role: Role,
}

/// One provisioned node.
#[derive(Debug, Clone)]
pub struct ProvisionedNode {
    pub unit: Unit,
    pub dir: std::path::PathBuf,
    pub node_key: PublicKey,
    pub peer_id: String,
}

#[derive(Debug, Clone)]
pub struct Provisioned {
    pub genesis: Genesis,
    pub nodes: Vec<ProvisionedNode>,
}

/// Provision a whole hierarchy under `root_dir`, one data directory per unit (named by the unit
/// id with `/` replaced by `.`). The first unit is the top. Every unit gets a node key and an
/// administrator (`admin`) certified by the administrator of the unit above (the root key for
/// the top unit, kept as person `root` there), which also registers the unit (the top unit
/// comes from the genesis); nodes and people are certified by their unit's administrator — the
/// chain a real network builds with `linli unit register` and `linli cert issue`. Every store
/// starts with every registration and certificate, as the directory would give it.
pub fn provision(
    root_dir: &Path,
    network_name: &str,
    units: &[PlanUnit],
    configure: impl Fn(&Unit) -> Config,
    now_ms: i64,
) -> Result<Provisioned, Error> {
    let top = units
        .first()
        .ok_or_else(|| Error::Invalid("a network needs at least its top unit".to_owned()))?;
    let root = keystore::generate_key();
    let genesis = Genesis {
        network_name: network_name.to_owned(),
        top: top.unit.clone(),
        root_keys: vec![root.public()],
        created_at_ms: now_ms,
    };
    genesis
        .validate()
        .map_err(|e| Error::Invalid(e.to_string()))?;
    let mut admins: std::collections::HashMap<String, SecretKey> = std::collections::HashMap::new();
    let mut certs = Vec::new();
    let mut registrations = Vec::new();
    let mut nodes = Vec::new();
    for plan in units {
        let u = &plan.unit;
        let dir = root_dir.join(u.id.as_str().replace('/', "."));
        fresh_dir(&dir)?;
        let layout = Layout::new(&dir);
        let issuer = match u.id.parent() {
            None => root.clone(),
            Some(p) => admins.get(p.as_str()).cloned().ok_or_else(|| {
                Error::Invalid(format!("unit {} comes before its parent {p}", u.id))
            })?,
        };
        let admin = keystore::generate_key();
        let node = keystore::generate_key();
        if u.id.parent().is_some() {
            // Dated with the certificates: the issuer's own certificate is in force from then.
            registrations.push(register(&genesis, &issuer, u.clone(), now_ms - 60_000));
        }
        certs.push(certify(
            &genesis,
            &issuer,
            admin.public(),
            u.id.clone(),
            Role::Admin,
            format!("{}管理员", u.name),
            now_ms,
            YEAR_MS,
        ));
        certs.push(certify(
            &genesis,
            &admin,
            node.public(),
            u.id.clone(),
            Role::Node,
            format!("{}节点", u.name),
            now_ms,
            YEAR_MS,
        ));
        keystore::write_key(&layout.node_key(), &node)?;
        keystore::write_key(&layout.people().join("admin.key"), &admin)?;
        if u.id.parent().is_none() {
            keystore::write_key(&layout.people().join("root.key"), &root)?;
        }
        for person in &plan.people {
            keystore::check_handle(&person.handle)?;
            let key = keystore::generate_key();
            certs.push(certify(
                &genesis,
                &admin,
                key.public(),
                u.id.clone(),
                person.role,
                person.holder.clone(),
                now_ms,
                YEAR_MS,
            ));
            keystore::write_key(
                &layout.people().join(format!("{}.key", person.handle)),
                &key,
            )?;
        }
        write(
            &layout.genesis(),
            &serde_json::to_string_pretty(&genesis).expect("genesis serializes"),
        )?;
        write(&layout.config(), &configure(u).to_toml())?;
        admins.insert(u.id.to_string(), admin);
        let peer_id = crate::net::keypair(&node).public().to_peer_id().to_string();
        nodes.push(ProvisionedNode {
            unit: u.clone(),
            dir,
            node_key: node.public(),
            peer_id,
        });
    }
    for n in &nodes {
        import_offline(&n.dir, &genesis, &registrations, &certs)?;
    }
    Ok(Provisioned { genesis, nodes })
}
