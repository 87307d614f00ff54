//! Forks: two signed heads of one log that cannot both be true.

use crate::proof::Evaluation;
use crate::wire::{Reader, Writer};
use crate::{ConsistencyProof, LogError, SignedTreeHead};

/// The format version of encoded fork evidence.
const EVIDENCE_VERSION: u8 = 1;

/// Proof that a log's writer signed two histories: two heads that are both validly signed
/// and not consistent. For heads of different lengths the consistency path that shows it
/// comes along (it is the newer tree's own path, so anyone can check it); heads of the same
/// length with different roots need none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForkEvidence {
    /// The shorter (or first) head.
    pub a: SignedTreeHead,
    /// The longer (or second) head.
    pub b: SignedTreeHead,
    /// For heads of different lengths, the newer tree's consistency path from `a`'s length.
    pub proof: Option<ConsistencyProof>,
}

/// What [`check_heads`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Consistency {
    /// The newer head extends the older one.
    Consistent,
    /// The writer signed two histories.
    Fork(Box<ForkEvidence>),
}

/// Checks two signed heads of one log against each other.
///
/// Both heads must verify and be of the same log, or it is an error (a forged head is no
/// evidence of anything). Then, with `older` the shorter head (they are swapped if need be):
///
/// - Equal lengths: the same root is [`Consistency::Consistent`], another root a fork; no
///   proof is needed (one given must have an empty path).
/// - `older` of length 0: consistent (a head of length 0 must carry the empty root).
/// - Otherwise the RFC 9162 §2.1.4.2 computation runs over `proof`'s path. If the path does
///   not reproduce the newer root, it is not the newer tree's path and the result is
///   [`LogError::BadProof`], which is *not* evidence: proofs are not signed, anyone can make
///   a bad one. If it does reproduce the newer root, the older root it yields is the newer
///   tree's own prefix root: equal to `older`'s root is consistent, different is a fork.
///   When the older length is a power of two only a seeded path
///   ([`ConsistencyProof::generate_seeded`]) can show a fork; an unseeded path that fails
///   is a bad proof.
pub fn check_heads(
    older: &SignedTreeHead,
    newer: &SignedTreeHead,
    proof: Option<&ConsistencyProof>,
) -> Result<Consistency, LogError> {
    older.verify()?;
    newer.verify()?;
    if older.head.log_id != newer.head.log_id {
        return Err(LogError::WrongLog {
            expected: older.head.log_id,
            found: newer.head.log_id,
        });
    }
    let (a, b) = if older.head.length <= newer.head.length {
        (older, newer)
    } else {
        (newer, older)
    };
    let (m, n) = (a.head.length, b.head.length);
    let empty;
    let proof = match proof {
        Some(p) => p,
        None if m == n || m == 0 => {
            empty = ConsistencyProof {
                old_size: m,
                new_size: n,
                path: Vec::new(),
            };
            &empty
        }
        None => {
            return Err(LogError::BadProof {
                what: "consistency proof",
                reason: "heads of different lengths need a consistency proof",
            });
        }
    };
    match proof.evaluate(m, &a.head.root, n, &b.head.root)? {
        Evaluation::Consistent => Ok(Consistency::Consistent),
        Evaluation::OldRootDiffers => Ok(Consistency::Fork(Box::new(ForkEvidence {
            a: *a,
            b: *b,
            proof: (m != n).then(|| proof.clone()),
        }))),
    }
}

impl ForkEvidence {
    /// Checks that the evidence shows a fork: both heads signed by the log, and not
    /// consistent by [`check_heads`]'s rule.
    pub fn verify(&self) -> Result<(), LogError> {
        match check_heads(&self.a, &self.b, self.proof.as_ref())? {
            Consistency::Fork(_) => Ok(()),
            Consistency::Consistent => Err(LogError::BadProof {
                what: "fork evidence",
                reason: "the two heads are consistent",
            }),
        }
    }

    /// The binary form: version (1), head `a` (137 bytes), head `b` (137 bytes), then 0, or
    /// 1 followed by the consistency proof's own form.
    pub fn encode(&self) -> Vec<u8> {
        let path = self.proof.as_ref().map_or(0, |p| 18 + 32 * p.path.len());
        let mut w = Writer::with_capacity(2 + 2 * SignedTreeHead::ENCODED_LEN + path);
        w.u8(EVIDENCE_VERSION);
        self.a.encode_into(&mut w);
        self.b.encode_into(&mut w);
        match &self.proof {
            None => w.u8(0),
            Some(p) => {
                w.u8(1);
                p.encode_into(&mut w);
            }
        }
        w.into_vec()
    }

    /// Reads [`ForkEvidence::encode`]'s form. It does not verify the evidence.
    pub fn decode(bytes: &[u8]) -> Result<Self, LogError> {
        let mut r = Reader::new("fork evidence", bytes);
        r.version(EVIDENCE_VERSION)?;
        let a = SignedTreeHead::decode_from(&mut r)?;
        let b = SignedTreeHead::decode_from(&mut r)?;
        let proof = match r.u8()? {
            0 => None,
            1 => Some(ConsistencyProof::decode_from(&mut r)?),
            other => return Err(r.error(format!("proof flag {other} is neither 0 nor 1"))),
        };
        r.finish()?;
        Ok(Self { a, b, proof })
    }
}
