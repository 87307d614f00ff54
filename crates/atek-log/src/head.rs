//! Tree heads and their signatures.

use atek_core::{PublicKey, SecretKey, Signature};

use crate::wire::{Reader, Writer};
use crate::{Hash, LogError};

/// The domain of tree head signatures; the signed message is this, then the log id, the
/// length (u64 big-endian) and the root.
pub const HEAD_SIGNING_DOMAIN: &[u8] = b"atek-log tree head v1\0";

/// The format version of encoded signed tree heads.
const HEAD_VERSION: u8 = 1;

/// A log's state at one length: which log, how many entries, the tree's root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TreeHead {
    /// The log's id: its writer's public key.
    pub log_id: PublicKey,
    /// The number of entries.
    pub length: u64,
    /// The root of the tree over those entries.
    pub root: Hash,
}

/// A tree head with its writer's signature. Anything that builds one from outside data must
/// call [`SignedTreeHead::verify`] before trusting it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SignedTreeHead {
    /// What is signed.
    pub head: TreeHead,
    /// The signature over [`TreeHead::signing_message`].
    pub signature: Signature,
}

impl TreeHead {
    /// The head of the empty log.
    pub fn empty(log_id: PublicKey) -> Self {
        Self {
            log_id,
            length: 0,
            root: Hash::empty_root(),
        }
    }

    /// The bytes a signature covers: [`HEAD_SIGNING_DOMAIN`] ‖ log id ‖ length (u64 BE) ‖
    /// root.
    pub fn signing_message(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(HEAD_SIGNING_DOMAIN.len() + 72);
        w.bytes(HEAD_SIGNING_DOMAIN);
        w.bytes(self.log_id.as_bytes());
        w.u64(self.length);
        w.bytes(self.root.as_bytes());
        w.into_vec()
    }

    /// Signs the head with the log's secret key, which must be the key of `log_id`.
    pub fn sign(&self, key: &SecretKey) -> Result<SignedTreeHead, LogError> {
        let public = key.public();
        if public != self.log_id {
            return Err(LogError::WrongKey {
                log_id: self.log_id,
                key: public,
            });
        }
        Ok(SignedTreeHead {
            head: *self,
            signature: key.sign(&self.signing_message()),
        })
    }
}

impl SignedTreeHead {
    /// The length of the encoded form.
    pub const ENCODED_LEN: usize = 1 + 32 + 8 + 32 + 64;

    /// Checks the signature under the head's log id, and that a head of length 0 has the
    /// empty tree's root.
    pub fn verify(&self) -> Result<(), LogError> {
        let head = &self.head;
        head.log_id
            .verify(&head.signing_message(), &self.signature)
            .map_err(|_| LogError::BadSignature {
                log_id: head.log_id,
                length: head.length,
            })?;
        if head.length == 0 && head.root != Hash::empty_root() {
            return Err(LogError::BadEmptyHead {
                log_id: head.log_id,
            });
        }
        Ok(())
    }

    /// The fixed binary form, 137 bytes: version (1), log id (32), length (u64 BE), root
    /// (32), signature (64).
    pub fn encode(&self) -> [u8; Self::ENCODED_LEN] {
        let mut w = Writer::with_capacity(Self::ENCODED_LEN);
        self.encode_into(&mut w);
        let mut out = [0u8; Self::ENCODED_LEN];
        out.copy_from_slice(&w.into_vec());
        out
    }

    pub(crate) fn encode_into(&self, w: &mut Writer) {
        w.u8(HEAD_VERSION);
        w.bytes(self.head.log_id.as_bytes());
        w.u64(self.head.length);
        w.bytes(self.head.root.as_bytes());
        w.bytes(self.signature.as_bytes());
    }

    /// Reads [`SignedTreeHead::encode`]'s form. It does not verify the signature.
    pub fn decode(bytes: &[u8]) -> Result<Self, LogError> {
        let mut r = Reader::new("signed tree head", bytes);
        let head = Self::decode_from(&mut r)?;
        r.finish()?;
        Ok(head)
    }

    pub(crate) fn decode_from(r: &mut Reader<'_>) -> Result<Self, LogError> {
        r.version(HEAD_VERSION)?;
        let log_id = r.public_key()?;
        let length = r.u64()?;
        let root = r.hash()?;
        let signature = r.signature()?;
        Ok(Self {
            head: TreeHead {
                log_id,
                length,
                root,
            },
            signature,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_encode() {
        let key = SecretKey::generate();
        let head = TreeHead {
            log_id: key.public(),
            length: 3,
            root: Hash::leaf(b"x"),
        };
        let signed = head.sign(&key).unwrap();
        signed.verify().unwrap();
        let bytes = signed.encode();
        assert_eq!(bytes[0], 1);
        assert_eq!(SignedTreeHead::decode(&bytes).unwrap(), signed);

        // Every field is covered by the signature.
        let mut longer = signed;
        longer.head.length = 4;
        assert!(matches!(
            longer.verify(),
            Err(LogError::BadSignature { length: 4, .. })
        ));
        let mut other_root = signed;
        other_root.head.root = Hash::leaf(b"y");
        assert!(other_root.verify().is_err());
        for i in 0..bytes.len() {
            let mut b = bytes;
            b[i] ^= 0x10;
            if let Ok(h) = SignedTreeHead::decode(&b) {
                assert!(h.verify().is_err(), "byte {i}");
            }
        }
        assert!(matches!(
            SignedTreeHead::decode(&bytes[..136]),
            Err(LogError::Decode { .. })
        ));
        let mut v2 = bytes;
        v2[0] = 2;
        assert!(matches!(
            SignedTreeHead::decode(&v2),
            Err(LogError::UnsupportedVersion { version: 2, .. })
        ));

        let other = SecretKey::generate();
        assert!(matches!(head.sign(&other), Err(LogError::WrongKey { .. })));

        let empty = TreeHead::empty(key.public()).sign(&key).unwrap();
        empty.verify().unwrap();
        let bogus = TreeHead { length: 0, ..head }.sign(&key).unwrap();
        assert!(matches!(bogus.verify(), Err(LogError::BadEmptyHead { .. })));
    }
}
