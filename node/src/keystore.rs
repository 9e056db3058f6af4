//! Private keys and the API token on disk: `0600`, owner only, never logged or sent.
//!
//! A node holds its own key (`keys/node.key`) and the keys of the people of its unit who work on
//! it (`keys/people/<handle>.key`). A file that others could read is refused, as ssh does: a key
//! that may have leaked is a key an administrator must revoke, not one to keep using quietly.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use linli_crdt_model::keys::{PublicKey, SecretKey};

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write key file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key file {path} already exists; refusing to overwrite a key")]
    Exists { path: PathBuf },
    #[error(
        "key file {path} is readable by others (mode {mode:o}); run `chmod 600 {path}` if it has not leaked, or revoke the key"
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("key file {path} does not hold a 64-hex-digit ed25519 seed")]
    Format { path: PathBuf },
    #[error("person {0:?} has no key on this node (keys/people/{0}.key)")]
    UnknownPerson(String),
    #[error("person handle {0:?} must be 1–64 characters of a-z, 0-9, '-' or '_'")]
    BadHandle(String),
}

/// 32 bytes from the operating system's random source.
pub fn random_seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    rand::fill(&mut seed[..]);
    seed
}

pub fn generate_key() -> SecretKey {
    SecretKey::from_seed(random_seed())
}

/// Write `contents` to a new file readable by its owner only.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), KeyFileError> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|source| KeyFileError::Write {
            path: path.to_owned(),
            source,
        })?;
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                KeyFileError::Exists {
                    path: path.to_owned(),
                }
            } else {
                KeyFileError::Write {
                    path: path.to_owned(),
                    source,
                }
            }
        })?;
    f.write_all(contents)
        .and_then(|_| f.sync_all())
        .map_err(|source| KeyFileError::Write {
            path: path.to_owned(),
            source,
        })
}

/// Read a file that must be private to its owner.
pub fn read_private(path: &Path) -> Result<String, KeyFileError> {
    let meta = fs::metadata(path).map_err(|source| KeyFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    fs::read_to_string(path).map_err(|source| KeyFileError::Read {
        path: path.to_owned(),
        source,
    })
}

pub fn write_key(path: &Path, key: &SecretKey) -> Result<(), KeyFileError> {
    write_private(path, format!("{}\n", hex::encode(key.to_seed())).as_bytes())
}

pub fn read_key(path: &Path) -> Result<SecretKey, KeyFileError> {
    let text = read_private(path)?;
    let mut seed = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut seed).map_err(|_| KeyFileError::Format {
        path: path.to_owned(),
    })?;
    Ok(SecretKey::from_seed(seed))
}

pub fn check_handle(handle: &str) -> Result<(), KeyFileError> {
    let ok = !handle.is_empty()
        && handle.len() <= 64
        && handle
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(KeyFileError::BadHandle(handle.to_owned()))
    }
}

/// The keys this node may sign with.
#[derive(Debug, Clone)]
pub struct Keystore {
    node: SecretKey,
    people: BTreeMap<String, SecretKey>,
}

impl Keystore {
    /// Load `keys/node.key` and every `keys/people/*.key`.
    pub fn load(keys_dir: &Path) -> Result<Keystore, KeyFileError> {
        let node = read_key(&keys_dir.join("node.key"))?;
        let mut people = BTreeMap::new();
        let people_dir = keys_dir.join("people");
        if people_dir.is_dir() {
            let entries = fs::read_dir(&people_dir).map_err(|source| KeyFileError::Read {
                path: people_dir.clone(),
                source,
            })?;
            for entry in entries {
                let entry = entry.map_err(|source| KeyFileError::Read {
                    path: people_dir.clone(),
                    source,
                })?;
                let path = entry.path();
                let Some(handle) = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".key"))
                else {
                    continue;
                };
                people.insert(handle.to_owned(), read_key(&path)?);
            }
        }
        Ok(Keystore { node, people })
    }

    pub fn from_keys(node: SecretKey, people: BTreeMap<String, SecretKey>) -> Keystore {
        Keystore { node, people }
    }

    pub fn node(&self) -> &SecretKey {
        &self.node
    }

    pub fn people(&self) -> impl Iterator<Item = (&String, &SecretKey)> {
        self.people.iter()
    }

    /// The key to act with: a person's handle, a full key id, or `None` for the node itself.
    pub fn signer(&self, person: Option<&str>) -> Result<&SecretKey, KeyFileError> {
        let Some(p) = person else {
            return Ok(&self.node);
        };
        if let Some(k) = self.people.get(p) {
            return Ok(k);
        }
        if let Ok(public) = p.parse::<PublicKey>() {
            if public == self.node.public() {
                return Ok(&self.node);
            }
            if let Some(k) = self.people.values().find(|k| k.public() == public) {
                return Ok(k);
            }
        }
        Err(KeyFileError::UnknownPerson(p.to_owned()))
    }

    pub fn add_person(&mut self, handle: &str, key: SecretKey) {
        self.people.insert(handle.to_owned(), key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_private_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/node.key");
        let key = generate_key();
        write_key(&path, &key).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(read_key(&path).unwrap().public(), key.public());
        assert!(matches!(
            write_key(&path, &key),
            Err(KeyFileError::Exists { .. })
        ));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_key(&path).unwrap_err();
        assert!(
            matches!(err, KeyFileError::Permissions { mode: 0o644, .. }),
            "{err}"
        );
    }

    #[test]
    fn signer_picks_a_person_by_handle_or_key() {
        let node = generate_key();
        let wang = generate_key();
        let mut ks = Keystore::from_keys(node.clone(), BTreeMap::new());
        ks.add_person("wangfang", wang.clone());
        assert_eq!(ks.signer(None).unwrap().public(), node.public());
        assert_eq!(ks.signer(Some("wangfang")).unwrap().public(), wang.public());
        assert_eq!(
            ks.signer(Some(&wang.public().to_string()))
                .unwrap()
                .public(),
            wang.public()
        );
        assert!(matches!(
            ks.signer(Some("lisi")),
            Err(KeyFileError::UnknownPerson(_))
        ));
    }
}
