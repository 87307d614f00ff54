//! Ed25519 keys and their text forms.
//!
//! The text forms are those of the original Atek network layer (reference §10.2): keys are
//! RFC 4648 base32 (alphabet `a-z2-7`), lowercase, without padding, so a 32-byte public key is
//! 52 characters and fits a DNS label; a secret key is written in libsodium's 64-byte layout
//! (seed ‖ public key), 103 characters. Database ids are the same public keys written as 64
//! lowercase hex characters (reference §5.3), and have their own type, [`DbId`], because a
//! node key is not a database key.
//!
//! Signatures and key arithmetic are ed25519-dalek's; verification is its strict form
//! (`verify_strict`), which rejects malleable signatures and small-order keys.

use std::fmt;
use std::str::FromStr;

use data_encoding::BASE32_NOPAD;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

/// Why a key, signature or keyfile was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// A text form or byte string of the wrong length.
    #[error("{kind} must be {expected} {unit} long, not {found}")]
    Length {
        /// What was being read (`"public key"`, `"secret key"`, …).
        kind: &'static str,
        /// The one length accepted.
        expected: usize,
        /// The length given.
        found: usize,
        /// `"characters"` or `"bytes"`.
        unit: &'static str,
    },
    /// A text form with characters outside its alphabet (or non-zero padding bits).
    #[error("{kind} is not valid {encoding}: {reason}")]
    Encoding {
        /// What was being read.
        kind: &'static str,
        /// `"base32"` or `"hex"`.
        encoding: &'static str,
        /// The decoder's explanation.
        reason: String,
    },
    /// 32 bytes that are not a usable Ed25519 public key (not a curve point, or of small
    /// order).
    #[error("{kind} is not a valid Ed25519 public key")]
    InvalidPublicKey {
        /// What was being read.
        kind: &'static str,
    },
    /// A secret key whose public half is not the public key of its seed.
    #[error("the public half of the secret key does not match its seed")]
    SecretHalvesMismatch,
    /// A signature that does not verify under the key.
    #[error("the signature does not verify under public key {public_key}")]
    BadSignature {
        /// The key the signature was checked against.
        public_key: PublicKey,
    },
    /// A keyfile that is not a JSON object of strings.
    #[error(
        "the keyfile is not valid JSON of the form {{\"publicKey\": …, \"secretKey\": …}}: {reason}"
    )]
    KeyfileJson {
        /// The JSON parser's explanation.
        reason: String,
    },
    /// A keyfile without one of its two fields.
    #[error("the keyfile has no {field:?} field")]
    KeyfileMissingField {
        /// `"publicKey"` or `"secretKey"`.
        field: &'static str,
    },
    /// A keyfile field that does not parse.
    #[error("the keyfile's {field:?} field is wrong: {source}")]
    KeyfileField {
        /// `"publicKey"` or `"secretKey"`.
        field: &'static str,
        /// What is wrong with it.
        #[source]
        source: Box<KeyError>,
    },
    /// A keyfile whose `publicKey` is not the public key of its `secretKey`.
    #[error(
        "the keyfile's publicKey {public_key} is not the public key of its secretKey ({derived})"
    )]
    KeyfileMismatch {
        /// The `publicKey` field.
        public_key: PublicKey,
        /// The public key the `secretKey` field derives.
        derived: PublicKey,
    },
}

/// Characters in the base32 form of a 32-byte key.
const B32_KEY_LEN: usize = 52;
/// Characters in the base32 form of a 64-byte libsodium secret key.
const B32_SECRET_LEN: usize = 103;
/// Characters in the hex form of a 32-byte key.
const HEX_KEY_LEN: usize = 64;

/// An Ed25519 public key: a node's identity, a log's id, a signature's verifier.
///
/// Its text form (`Display`, `FromStr`, serde) is lowercase base32 without padding, 52
/// characters; parsing accepts any case but exactly 52 characters and only a valid key
/// (a curve point that is not of small order). [`PublicKey::to_hex`] gives the 64-character
/// hex form.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// Length in bytes.
    pub const LENGTH: usize = 32;

    /// Checks that `bytes` are a usable Ed25519 public key.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, KeyError> {
        let kind = "public key";
        match VerifyingKey::from_bytes(bytes) {
            Ok(key) if !key.is_weak() => Ok(Self(*bytes)),
            _ => Err(KeyError::InvalidPublicKey { kind }),
        }
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// 64 lowercase hex characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex characters, in either case.
    pub fn from_hex(s: &str) -> Result<Self, KeyError> {
        Self::from_bytes(&decode_hex_32("public key", s)?)
    }

    /// The first 10 characters of the base32 form, for log lines.
    pub fn fmt_short(&self) -> String {
        let mut s = self.to_string();
        s.truncate(10);
        s
    }

    /// Checks `signature` over `message` (strict Ed25519 verification).
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), KeyError> {
        let key = VerifyingKey::from_bytes(&self.0)
            .map_err(|_| KeyError::InvalidPublicKey { kind: "public key" })?;
        let signature = ed25519_dalek::Signature::from_bytes(&signature.0);
        key.verify_strict(message, &signature)
            .map_err(|_| KeyError::BadSignature { public_key: *self })
    }
}

impl TryFrom<&[u8]> for PublicKey {
    type Error = KeyError;
    fn try_from(bytes: &[u8]) -> Result<Self, KeyError> {
        let bytes: &[u8; 32] = bytes.try_into().map_err(|_| KeyError::Length {
            kind: "public key",
            expected: Self::LENGTH,
            found: bytes.len(),
            unit: "bytes",
        })?;
        Self::from_bytes(bytes)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&encode_b32(&self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        let kind = "public key";
        check_len(kind, s, B32_KEY_LEN)?;
        let bytes = decode_b32(kind, s)?;
        let bytes: [u8; 32] = bytes.as_slice().try_into().map_err(|_| KeyError::Length {
            kind,
            expected: Self::LENGTH,
            found: bytes.len(),
            unit: "bytes",
        })?;
        Self::from_bytes(&bytes)
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An Ed25519 secret key (ed25519-dalek's `SigningKey`).
///
/// It never prints: `Debug` shows `SecretKey(<redacted>)` and there is no `Display`. Its
/// memory is zeroed when it is dropped. The only text form is
/// [`SecretKey::to_base32_libsodium`], for keyfiles.
#[derive(Clone)]
pub struct SecretKey(SigningKey);

impl SecretKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        crate::token::fill_random(seed.as_mut_slice());
        Self(SigningKey::from_bytes(&seed))
    }

    /// The key whose 32-byte seed (RFC 8032's "private key") is `seed`.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let seed = Zeroizing::new(seed);
        Self(SigningKey::from_bytes(&seed))
    }

    /// Its 32-byte seed (RFC 8032's "private key"), to hand the key to another Ed25519
    /// library (iroh's endpoint identity). This is the secret itself; the copy is zeroed
    /// when dropped.
    pub fn to_seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    /// Its public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.0.sign(message).to_bytes())
    }

    /// The libsodium layout (seed ‖ public key, 64 bytes) in lowercase base32 without
    /// padding: 103 characters. This is the secret itself: keep it out of logs.
    pub fn to_base32_libsodium(&self) -> String {
        let mut bytes = Zeroizing::new([0u8; 64]);
        bytes[..32].copy_from_slice(self.0.as_bytes());
        bytes[32..].copy_from_slice(self.0.verifying_key().as_bytes());
        encode_b32(bytes.as_slice())
    }

    /// Parses [`SecretKey::to_base32_libsodium`]'s form (any case, exactly 103 characters)
    /// and checks that the public half is the seed's public key.
    pub fn from_base32_libsodium(s: &str) -> Result<Self, KeyError> {
        let kind = "secret key";
        check_len(kind, s, B32_SECRET_LEN)?;
        let bytes = decode_b32(kind, s)?;
        if bytes.len() != 64 {
            return Err(KeyError::Length {
                kind,
                expected: 64,
                found: bytes.len(),
                unit: "bytes",
            });
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        seed.copy_from_slice(&bytes[..32]);
        let key = SigningKey::from_bytes(&seed);
        if key.verifying_key().as_bytes()[..] != bytes[32..] {
            return Err(KeyError::SecretHalvesMismatch);
        }
        Ok(Self(key))
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

/// An Ed25519 signature, 64 bytes. `Debug` prints it in hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature([u8; 64]);

impl Signature {
    /// Length in bytes.
    pub const LENGTH: usize = 64;

    /// Wraps 64 bytes. Any bytes are a signature; whether it verifies is
    /// [`PublicKey::verify`]'s question.
    pub fn from_bytes(bytes: [u8; 64]) -> Self {
        Self(bytes)
    }

    /// The 64 bytes.
    pub fn as_bytes(&self) -> &[u8; 64] {
        &self.0
    }

    /// The 64 bytes, by value.
    pub fn to_bytes(&self) -> [u8; 64] {
        self.0
    }
}

impl TryFrom<&[u8]> for Signature {
    type Error = KeyError;
    fn try_from(bytes: &[u8]) -> Result<Self, KeyError> {
        let bytes: [u8; 64] = bytes.try_into().map_err(|_| KeyError::Length {
            kind: "signature",
            expected: Self::LENGTH,
            found: bytes.len(),
            unit: "bytes",
        })?;
        Ok(Self(bytes))
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", hex::encode(self.0))
    }
}

/// A key pair as the original's JSON keyfile holds it:
/// `{"publicKey": "<base32>", "secretKey": "<base32 of seed ‖ public>"}`.
///
/// The two halves always match: a `Keyfile` is built from its secret key, and parsing refuses
/// a file whose `publicKey` is not the secret key's. Reading and writing the file is the
/// caller's business (this crate does no I/O).
#[derive(Debug, Clone)]
pub struct Keyfile {
    public_key: PublicKey,
    secret_key: SecretKey,
}

#[derive(Deserialize)]
struct KeyfileJson {
    #[serde(rename = "publicKey")]
    public_key: Option<String>,
    #[serde(rename = "secretKey")]
    secret_key: Option<String>,
}

impl Keyfile {
    /// The keyfile of `secret_key`.
    pub fn new(secret_key: SecretKey) -> Self {
        Self {
            public_key: secret_key.public(),
            secret_key,
        }
    }

    /// A keyfile with a freshly generated key.
    pub fn generate() -> Self {
        Self::new(SecretKey::generate())
    }

    /// The public key.
    pub fn public_key(&self) -> PublicKey {
        self.public_key
    }

    /// The secret key.
    pub fn secret_key(&self) -> &SecretKey {
        &self.secret_key
    }

    /// The secret key, by value.
    pub fn into_secret_key(self) -> SecretKey {
        self.secret_key
    }

    /// The file's text, exactly `{"publicKey": "…", "secretKey": "…"}`. It holds the secret.
    pub fn to_json(&self) -> String {
        // Base32 needs no JSON escaping, so the text is written as the original wrote it.
        format!(
            "{{\"publicKey\": \"{}\", \"secretKey\": \"{}\"}}",
            self.public_key,
            self.secret_key.to_base32_libsodium()
        )
    }

    /// Parses a keyfile. The error says which field is missing or wrong, or that the two do
    /// not match. Unknown fields are ignored, as the original did.
    pub fn from_json(text: &str) -> Result<Self, KeyError> {
        let raw: KeyfileJson = serde_json::from_str(text).map_err(|e| KeyError::KeyfileJson {
            reason: e.to_string(),
        })?;
        let KeyfileJson {
            public_key: public,
            secret_key: secret,
        } = raw;
        let secret = secret.map(Zeroizing::new);
        let public = public.ok_or(KeyError::KeyfileMissingField { field: "publicKey" })?;
        let secret = secret.ok_or(KeyError::KeyfileMissingField { field: "secretKey" })?;
        let public_key: PublicKey = public.parse().map_err(|e| KeyError::KeyfileField {
            field: "publicKey",
            source: Box::new(e),
        })?;
        let secret_key =
            SecretKey::from_base32_libsodium(&secret).map_err(|e| KeyError::KeyfileField {
                field: "secretKey",
                source: Box::new(e),
            })?;
        let derived = secret_key.public();
        if derived != public_key {
            return Err(KeyError::KeyfileMismatch {
                public_key,
                derived,
            });
        }
        Ok(Self {
            public_key,
            secret_key,
        })
    }
}

/// A database's id: the public key of the log that holds it, written as 64 lowercase hex
/// characters (the original's `hyper://{id}/` form). Parsing accepts either case.
///
/// It is its own type so that a node key cannot be passed where a database is meant.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DbId(PublicKey);

impl DbId {
    /// The database whose log key is `key`.
    pub fn from_public_key(key: PublicKey) -> Self {
        Self(key)
    }

    /// The log's public key.
    pub fn public_key(&self) -> PublicKey {
        self.0
    }
}

impl fmt::Display for DbId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_hex())
    }
}

impl fmt::Debug for DbId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DbId({self})")
    }
}

impl FromStr for DbId {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        let bytes = decode_hex_32("database id", s)?;
        PublicKey::from_bytes(&bytes)
            .map(Self)
            .map_err(|_| KeyError::InvalidPublicKey {
                kind: "database id",
            })
    }
}

impl Serialize for DbId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DbId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

fn check_len(kind: &'static str, s: &str, expected: usize) -> Result<(), KeyError> {
    if s.len() == expected {
        Ok(())
    } else {
        Err(KeyError::Length {
            kind,
            expected,
            found: s.len(),
            unit: "characters",
        })
    }
}

fn encode_b32(bytes: &[u8]) -> String {
    let mut s = BASE32_NOPAD.encode(bytes);
    s.make_ascii_lowercase();
    s
}

/// Decodes base32 in either case; data-encoding refuses non-zero trailing bits, so every
/// value has exactly one text form (up to case).
fn decode_b32(kind: &'static str, s: &str) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let upper = Zeroizing::new(s.to_ascii_uppercase());
    BASE32_NOPAD
        .decode(upper.as_bytes())
        .map(Zeroizing::new)
        .map_err(|e| KeyError::Encoding {
            kind,
            encoding: "base32",
            reason: e.to_string(),
        })
}

fn decode_hex_32(kind: &'static str, s: &str) -> Result<[u8; 32], KeyError> {
    check_len(kind, s, HEX_KEY_LEN)?;
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(s, &mut bytes).map_err(|e| KeyError::Encoding {
        kind,
        encoding: "hex",
        reason: e.to_string(),
    })?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 8032 §7.1, test 1.
    const SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const PUBLIC_HEX: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    const SIG_EMPTY: &str = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";
    // The same key's base32 forms, computed independently (Python's base64.b32encode).
    const PUBLIC_B32: &str = "25njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkena";
    const SECRET_B32: &str = "tvq3dhpp7vngbouejl2jf3bmyrcetrljpmzgsglqhowaghfop5qnowuyagblccvx2vf75u6jmqdtudxbolz5vjrdewxqegti64dvcgq";

    fn rfc_key() -> SecretKey {
        let mut seed = [0u8; 32];
        hex::decode_to_slice(SEED, &mut seed).unwrap();
        SecretKey::from_seed(seed)
    }

    #[test]
    fn rfc8032_test_1() {
        let key = rfc_key();
        let public = key.public();
        assert_eq!(public.to_hex(), PUBLIC_HEX);
        assert_eq!(public.to_string(), PUBLIC_B32);
        assert_eq!(key.to_base32_libsodium(), SECRET_B32);
        let sig = key.sign(b"");
        assert_eq!(hex::encode(sig.as_bytes()), SIG_EMPTY);
        public.verify(b"", &sig).unwrap();
        assert!(matches!(
            public.verify(b"x", &sig),
            Err(KeyError::BadSignature { .. })
        ));
        let db = DbId::from_public_key(public);
        assert_eq!(db.to_string(), PUBLIC_HEX);
    }

    #[test]
    fn public_key_text_round_trips() {
        let key = SecretKey::generate().public();
        let b32 = key.to_string();
        assert_eq!(b32.len(), 52);
        assert!(b32.bytes().all(|b| matches!(b, b'a'..=b'z' | b'2'..=b'7')));
        assert_eq!(b32.parse::<PublicKey>().unwrap(), key);
        assert_eq!(b32.to_uppercase().parse::<PublicKey>().unwrap(), key);
        assert_eq!(PublicKey::from_hex(&key.to_hex()).unwrap(), key);
        assert_eq!(
            PublicKey::from_hex(&key.to_hex().to_uppercase()).unwrap(),
            key
        );
        assert_eq!(PublicKey::from_bytes(key.as_bytes()).unwrap(), key);
        let json = serde_json::to_string(&key).unwrap();
        assert_eq!(json, format!("\"{b32}\""));
        assert_eq!(serde_json::from_str::<PublicKey>(&json).unwrap(), key);
        assert_eq!(key.fmt_short(), b32[..10]);
    }

    #[test]
    fn public_key_rejects_wrong_lengths_and_alphabets() {
        let good = PUBLIC_B32;
        for (bad, what) in [
            (&good[..51], "short"),
            (&format!("{good}a")[..], "long"),
            ("", "empty"),
        ] {
            assert!(
                matches!(
                    bad.parse::<PublicKey>(),
                    Err(KeyError::Length {
                        expected: 52,
                        unit: "characters",
                        ..
                    })
                ),
                "{what}"
            );
        }
        // '1', '8', '0' and '=' are outside RFC 4648's base32 alphabet.
        for c in ['1', '8', '0', '=', '-'] {
            let bad = format!("{c}{}", &good[1..]);
            assert!(
                matches!(bad.parse::<PublicKey>(), Err(KeyError::Encoding { .. })),
                "{c}"
            );
        }
        // Non-zero trailing bits: the last character of a 52-char key carries 1 bit of data.
        let mut bad = good.to_owned();
        bad.pop();
        bad.push('b');
        assert!(matches!(
            bad.parse::<PublicKey>(),
            Err(KeyError::Encoding { .. })
        ));
        // Hex forms.
        assert!(matches!(
            PublicKey::from_hex(&PUBLIC_HEX[..62]),
            Err(KeyError::Length { expected: 64, .. })
        ));
        assert!(matches!(
            PublicKey::from_hex(&format!("zz{}", &PUBLIC_HEX[2..])),
            Err(KeyError::Encoding {
                encoding: "hex",
                ..
            })
        ));
        // Byte slices.
        assert!(matches!(
            PublicKey::try_from(&[0u8; 31][..]),
            Err(KeyError::Length {
                expected: 32,
                found: 31,
                ..
            })
        ));
    }

    #[test]
    fn public_key_rejects_invalid_points() {
        // The identity point (small order) and the encoding y = 2: both refused.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(matches!(
            PublicKey::from_bytes(&identity),
            Err(KeyError::InvalidPublicKey { .. })
        ));
        let not_on_curve = {
            let mut b = [0u8; 32];
            b[0] = 2;
            b
        };
        assert!(matches!(
            PublicKey::from_bytes(&not_on_curve),
            Err(KeyError::InvalidPublicKey { .. })
        ));
        let text = encode_b32(&identity);
        assert!(matches!(
            text.parse::<PublicKey>(),
            Err(KeyError::InvalidPublicKey { .. })
        ));
    }

    #[test]
    fn secret_key_text_round_trips_and_checks_halves() {
        let key = SecretKey::generate();
        let text = key.to_base32_libsodium();
        assert_eq!(text.len(), 103);
        let back = SecretKey::from_base32_libsodium(&text).unwrap();
        assert_eq!(back.public(), key.public());
        let back = SecretKey::from_base32_libsodium(&text.to_uppercase()).unwrap();
        assert_eq!(back.public(), key.public());

        // Seed of one key, public half of another.
        let other = SecretKey::generate().to_base32_libsodium();
        let mut bytes = BASE32_NOPAD.decode(text.to_uppercase().as_bytes()).unwrap();
        let other_bytes = BASE32_NOPAD
            .decode(other.to_uppercase().as_bytes())
            .unwrap();
        bytes[32..].copy_from_slice(&other_bytes[32..]);
        assert_eq!(
            SecretKey::from_base32_libsodium(&encode_b32(&bytes)).unwrap_err(),
            KeyError::SecretHalvesMismatch
        );
        assert!(matches!(
            SecretKey::from_base32_libsodium(&text[..102]),
            Err(KeyError::Length { expected: 103, .. })
        ));
        assert!(matches!(
            SecretKey::from_base32_libsodium(&format!("1{}", &text[1..])),
            Err(KeyError::Encoding { .. })
        ));
    }

    #[test]
    fn secret_key_never_prints() {
        let key = rfc_key();
        let debug = format!("{key:?}");
        assert_eq!(debug, "SecretKey(<redacted>)");
        let keyfile = Keyfile::new(key);
        let debug = format!("{keyfile:?}");
        assert!(!debug.contains(&SECRET_B32[..20]), "{debug}");
        assert!(!debug.contains(&SEED[..20]), "{debug}");
    }

    #[test]
    fn signatures() {
        let key = SecretKey::generate();
        let sig = key.sign(b"hello");
        let back = Signature::from_bytes(sig.to_bytes());
        key.public().verify(b"hello", &back).unwrap();
        assert_eq!(Signature::try_from(&sig.as_bytes()[..]).unwrap(), sig);
        assert!(matches!(
            Signature::try_from(&[0u8; 63][..]),
            Err(KeyError::Length { expected: 64, .. })
        ));
        let mut flipped = sig.to_bytes();
        flipped[10] ^= 1;
        assert!(
            key.public()
                .verify(b"hello", &Signature::from_bytes(flipped))
                .is_err()
        );
        assert!(
            SecretKey::generate()
                .public()
                .verify(b"hello", &sig)
                .is_err()
        );
        assert!(format!("{sig:?}").starts_with("Signature("));
        assert!(format!("{sig:?}").contains(&hex::encode(&sig.as_bytes()[..8])));
    }

    #[test]
    fn keyfile_round_trip_and_exact_form() {
        let keyfile = Keyfile::new(rfc_key());
        let json = keyfile.to_json();
        assert_eq!(
            json,
            format!("{{\"publicKey\": \"{PUBLIC_B32}\", \"secretKey\": \"{SECRET_B32}\"}}")
        );
        let back = Keyfile::from_json(&json).unwrap();
        assert_eq!(back.public_key(), keyfile.public_key());
        assert_eq!(back.secret_key().public(), keyfile.public_key());
        // The original's own JSON.stringify output, without spaces, and other fields.
        let compact =
            format!("{{\"publicKey\":\"{PUBLIC_B32}\",\"secretKey\":\"{SECRET_B32}\",\"x\":1}}");
        assert_eq!(
            Keyfile::from_json(&compact).unwrap().public_key(),
            keyfile.public_key()
        );
    }

    #[test]
    fn keyfile_errors_say_what_is_wrong() {
        assert!(matches!(
            Keyfile::from_json("not json"),
            Err(KeyError::KeyfileJson { .. })
        ));
        assert_eq!(
            Keyfile::from_json(&format!("{{\"secretKey\": \"{SECRET_B32}\"}}")).unwrap_err(),
            KeyError::KeyfileMissingField { field: "publicKey" }
        );
        assert_eq!(
            Keyfile::from_json(&format!("{{\"publicKey\": \"{PUBLIC_B32}\"}}")).unwrap_err(),
            KeyError::KeyfileMissingField { field: "secretKey" }
        );
        let short = Keyfile::from_json(&format!(
            "{{\"publicKey\": \"{}\", \"secretKey\": \"{SECRET_B32}\"}}",
            &PUBLIC_B32[..50]
        ))
        .unwrap_err();
        assert!(
            matches!(&short, KeyError::KeyfileField { field: "publicKey", source }
                if matches!(**source, KeyError::Length { expected: 52, found: 50, .. })),
            "{short:?}"
        );
        assert!(short.to_string().contains("52"), "{short}");
        let bad_secret = Keyfile::from_json(&format!(
            "{{\"publicKey\": \"{PUBLIC_B32}\", \"secretKey\": \"{}\"}}",
            &SECRET_B32[..52]
        ))
        .unwrap_err();
        assert!(matches!(
            bad_secret,
            KeyError::KeyfileField {
                field: "secretKey",
                ..
            }
        ));
        let other = SecretKey::generate().public();
        let mismatch = Keyfile::from_json(&format!(
            "{{\"publicKey\": \"{other}\", \"secretKey\": \"{SECRET_B32}\"}}"
        ))
        .unwrap_err();
        assert!(
            matches!(mismatch, KeyError::KeyfileMismatch { public_key, .. } if public_key == other)
        );
        assert!(matches!(
            Keyfile::from_json("{\"publicKey\": 1, \"secretKey\": 2}"),
            Err(KeyError::KeyfileJson { .. })
        ));
    }

    #[test]
    fn db_ids() {
        let key = rfc_key().public();
        let id = DbId::from_public_key(key);
        assert_eq!(id.to_string(), PUBLIC_HEX);
        assert_eq!(PUBLIC_HEX.parse::<DbId>().unwrap(), id);
        assert_eq!(PUBLIC_HEX.to_uppercase().parse::<DbId>().unwrap(), id);
        assert_eq!(id.public_key(), key);
        assert!(matches!(
            PUBLIC_B32.parse::<DbId>(),
            Err(KeyError::Length {
                kind: "database id",
                ..
            })
        ));
        assert!(matches!(
            format!("g{}", &PUBLIC_HEX[1..]).parse::<DbId>(),
            Err(KeyError::Encoding { .. })
        ));
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{PUBLIC_HEX}\""));
        assert_eq!(serde_json::from_str::<DbId>(&json).unwrap(), id);
        assert_eq!(format!("{id:?}"), format!("DbId({PUBLIC_HEX})"));
    }
}
