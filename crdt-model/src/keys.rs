//! Keys, signatures and the one place that turns bytes into something signed.
//!
//! Every signature in linli is over `domain tag || canonical body`, so a signature made for one
//! purpose (a certificate) can never be replayed as another (a change). Key generation takes its
//! 32 seed bytes as an argument: the model never reads an RNG.

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{Signer, Verifier};
use serde::{Deserialize, Serialize};

/// A public key: who signed. Printed as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PublicKey(#[serde(with = "hex32")] pub [u8; 32]);

/// A secret signing key. Never printed, never serialized by accident.
#[derive(Clone)]
pub struct SecretKey(ed25519_dalek::SigningKey);

/// An ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Signature(#[serde(with = "hex64")] pub [u8; 64]);

/// Why a key or signature did not parse or verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("key id must be 64 hex digits, got {0:?}")]
    BadKeyId(String),
    #[error("{0} is not a valid ed25519 public key")]
    NotOnCurve(PublicKey),
    #[error("signature by {0} does not verify")]
    BadSignature(PublicKey),
}

/// Domain tags: one per kind of signed statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    Genesis,
    Certificate,
    Revocation,
    Header,
    Change,
    Attestation,
    Hello,
    Registration,
}

impl Domain {
    fn tag(self) -> &'static [u8] {
        match self {
            Domain::Genesis => b"linli/v1/genesis\0",
            Domain::Certificate => b"linli/v1/certificate\0",
            Domain::Revocation => b"linli/v1/revocation\0",
            Domain::Header => b"linli/v1/header\0",
            Domain::Change => b"linli/v1/change\0",
            Domain::Attestation => b"linli/v1/attestation\0",
            Domain::Hello => b"linli/v1/hello\0",
            Domain::Registration => b"linli/v1/registration\0",
        }
    }
}

/// The exact bytes a signature covers: domain tag followed by the postcard encoding of `body`.
/// postcard is deterministic for the plain structs signed here (no maps with unordered keys).
pub fn signing_bytes<T: Serialize>(domain: Domain, body: &T) -> Vec<u8> {
    let mut out = domain.tag().to_vec();
    // Serializing plain structs of owned data into a Vec cannot fail.
    let encoded = postcard::to_allocvec(body).expect("postcard encoding of a plain struct");
    out.extend_from_slice(&encoded);
    out
}

impl SecretKey {
    /// A key from 32 seed bytes supplied by the caller (the node draws them from the OS).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        SecretKey(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    /// The seed, for writing the key to its 0600 file.
    pub fn to_seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    pub fn sign_raw(&self, message: &[u8]) -> Signature {
        Signature(self.0.sign(message).to_bytes())
    }

    pub fn sign<T: Serialize>(&self, domain: Domain, body: &T) -> Signature {
        self.sign_raw(&signing_bytes(domain, body))
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({})", self.public().short())
    }
}

impl PublicKey {
    /// The first 12 hex digits: enough to tell keys apart in a table.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..6])
    }

    fn dalek(&self) -> Result<ed25519_dalek::VerifyingKey, KeyError> {
        ed25519_dalek::VerifyingKey::from_bytes(&self.0).map_err(|_| KeyError::NotOnCurve(*self))
    }

    pub fn verify_raw(&self, message: &[u8], signature: &Signature) -> Result<(), KeyError> {
        let key = self.dalek()?;
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        key.verify(message, &sig)
            .map_err(|_| KeyError::BadSignature(*self))
    }

    pub fn verify<T: Serialize>(
        &self,
        domain: Domain,
        body: &T,
        signature: &Signature,
    ) -> Result<(), KeyError> {
        self.verify_raw(&signing_bytes(domain, body), signature)
    }
}

/// Verify many signatures at once. With more than one, this uses ed25519 batch verification
/// (about twice as fast per signature); if the batch fails it finds the first bad signature so
/// the caller can name it. Returns the index of the first failing item.
pub fn verify_many(items: &[(PublicKey, &[u8], Signature)]) -> Result<(), (usize, KeyError)> {
    if items.len() == 1 {
        let (key, msg, sig) = &items[0];
        return key.verify_raw(msg, sig).map_err(|e| (0, e));
    }
    let mut keys = Vec::with_capacity(items.len());
    for (i, (key, _, _)) in items.iter().enumerate() {
        keys.push(key.dalek().map_err(|e| (i, e))?);
    }
    let messages: Vec<&[u8]> = items.iter().map(|(_, m, _)| *m).collect();
    let sigs: Vec<ed25519_dalek::Signature> = items
        .iter()
        .map(|(_, _, s)| ed25519_dalek::Signature::from_bytes(&s.0))
        .collect();
    if ed25519_dalek::verify_batch(&messages, &sigs, &keys).is_ok() {
        return Ok(());
    }
    for (i, (key, msg, sig)) in items.iter().enumerate() {
        key.verify_raw(msg, sig).map_err(|e| (i, e))?;
    }
    // Batch verification is stricter than single verification for some non-canonical inputs;
    // treat a batch failure with all singles passing as a failure of the first item.
    Err((0, KeyError::BadSignature(items[0].0)))
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.short())
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut out).map_err(|_| KeyError::BadKeyId(s.to_owned()))?;
        Ok(PublicKey(out))
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({}…)", hex::encode(&self.0[..6]))
    }
}

/// A SHA-256 digest used as an identifier (network id, document id, certificate id…).
pub fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

macro_rules! hex_serde {
    ($name:ident, $n:expr) => {
        /// Hex in human-readable formats (JSON), bytes in binary ones (postcard, CBOR).
        pub(crate) mod $name {
            use serde::{Deserialize, Deserializer, Serializer};
            pub(crate) fn serialize<S: Serializer>(v: &[u8; $n], s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.serialize_str(&hex::encode(v))
                } else {
                    s.serialize_bytes(v)
                }
            }
            pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
                d: D,
            ) -> Result<[u8; $n], D::Error> {
                let mut out = [0u8; $n];
                if d.is_human_readable() {
                    let s = String::deserialize(d)?;
                    hex::decode_to_slice(&s, &mut out).map_err(serde::de::Error::custom)?;
                } else {
                    let v = serde_bytes::ByteBuf::deserialize(d)?;
                    if v.len() != $n {
                        return Err(serde::de::Error::invalid_length(v.len(), &stringify!($n)));
                    }
                    out.copy_from_slice(&v);
                }
                Ok(out)
            }
        }
    };
}
hex_serde!(hex32, 32);
hex_serde!(hex64, 64);

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> SecretKey {
        SecretKey::from_seed([n; 32])
    }

    #[test]
    fn domains_separate_signatures() {
        let k = key(1);
        let sig = k.sign(Domain::Certificate, &"x");
        assert!(k.public().verify(Domain::Certificate, &"x", &sig).is_ok());
        assert_eq!(
            k.public().verify(Domain::Change, &"x", &sig),
            Err(KeyError::BadSignature(k.public()))
        );
    }

    #[test]
    fn batch_names_the_bad_item() {
        let (a, b) = (key(1), key(2));
        let m1 = b"one".to_vec();
        let m2 = b"two".to_vec();
        let good = vec![
            (a.public(), &m1[..], a.sign_raw(&m1)),
            (b.public(), &m2[..], b.sign_raw(&m2)),
        ];
        assert!(verify_many(&good).is_ok());
        let bad = vec![
            (a.public(), &m1[..], a.sign_raw(&m1)),
            (b.public(), &m2[..], b.sign_raw(&m1)),
        ];
        assert_eq!(verify_many(&bad).unwrap_err().0, 1);
    }

    #[test]
    fn key_ids_round_trip_and_reject_garbage() {
        let k = key(3).public();
        assert_eq!(k.to_string().parse::<PublicKey>().unwrap(), k);
        assert!(matches!(
            "zz".parse::<PublicKey>(),
            Err(KeyError::BadKeyId(_))
        ));
        let json = serde_json::to_string(&k).unwrap();
        assert_eq!(json, format!("\"{k}\""));
        let bin = postcard::to_allocvec(&k).unwrap();
        assert_eq!(postcard::from_bytes::<PublicKey>(&bin).unwrap(), k);
    }
}
