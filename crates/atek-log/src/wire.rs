//! Byte-level helpers for the binary forms: big-endian integers, fixed-size fields, and a
//! reader that names what it was decoding when the input is short or malformed.

use atek_core::{PublicKey, Signature};

use crate::{Hash, LogError};

/// Appends fields to a byte vector.
#[derive(Debug, Default)]
pub(crate) struct Writer(Vec<u8>);

impl Writer {
    pub(crate) fn with_capacity(n: usize) -> Self {
        Self(Vec::with_capacity(n))
    }

    pub(crate) fn u8(&mut self, v: u8) {
        self.0.push(v);
    }

    pub(crate) fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }

    pub(crate) fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }

    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn into_vec(self) -> Vec<u8> {
        self.0
    }
}

/// Reads fields from a byte slice.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    what: &'static str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(what: &'static str, bytes: &'a [u8]) -> Self {
        Self {
            what,
            bytes,
            pos: 0,
        }
    }

    pub(crate) fn error(&self, reason: String) -> LogError {
        LogError::Decode {
            what: self.what,
            reason,
        }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], LogError> {
        let rest = &self.bytes[self.pos..];
        if rest.len() < n {
            return Err(self.error(format!(
                "ends after {} bytes, {} more expected at offset {}",
                self.bytes.len(),
                n - rest.len(),
                self.pos
            )));
        }
        self.pos += n;
        Ok(&rest[..n])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], LogError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, LogError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, LogError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, LogError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, LogError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    pub(crate) fn hash(&mut self) -> Result<Hash, LogError> {
        Ok(Hash::from_bytes(self.array()?))
    }

    pub(crate) fn public_key(&mut self) -> Result<PublicKey, LogError> {
        let bytes = self.array::<32>()?;
        PublicKey::from_bytes(&bytes).map_err(|e| self.error(e.to_string()))
    }

    pub(crate) fn signature(&mut self) -> Result<Signature, LogError> {
        Ok(Signature::from_bytes(self.array()?))
    }

    /// Reads the version byte and refuses any other than `supported`.
    pub(crate) fn version(&mut self, supported: u8) -> Result<(), LogError> {
        let version = self.u8()?;
        if version == supported {
            Ok(())
        } else {
            Err(LogError::UnsupportedVersion {
                what: self.what,
                version,
                supported,
            })
        }
    }

    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// Refuses trailing bytes.
    pub(crate) fn finish(&self) -> Result<(), LogError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(self.error(format!("{n} bytes follow its end"))),
        }
    }
}
