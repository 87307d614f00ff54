//! Password hashing: argon2id with the argon2 crate's default cost (m = 19 MiB, t = 2, p = 1)
//! and a random 16-byte salt per hash, stored as a PHC string
//! (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`).
//!
//! The work memory is allocated here rather than inside the crate so that it goes back to the
//! operating system after every hash (see [`work_memory`]). Verification recomputes the hash
//! with the parameters stored in the PHC string and compares with
//! [`Output`]'s constant-time equality.
//!
//! These functions are CPU-bound for tens of milliseconds: call them on a blocking thread.

use std::sync::OnceLock;

use argon2::password_hash::{Error, Output, ParamsString, PasswordHash, Salt, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

/// Bytes of random salt per hash (the PHC recommendation).
const SALT_LEN: usize = Salt::RECOMMENDED_LENGTH;

/// The largest memory cost accepted from a stored hash, in KiB (1 GiB): a damaged or edited
/// users file must not make a login allocate without bound.
const MAX_M_COST: u32 = 1 << 20;
/// The largest time cost accepted from a stored hash.
const MAX_T_COST: u32 = 64;

/// The cost of new hashes. Tests use a cheap one: the real one takes about half a second per
/// hash in an unoptimized build.
fn params() -> Params {
    #[cfg(not(test))]
    {
        Params::DEFAULT
    }
    #[cfg(test)]
    {
        Params::new(256, 1, 1, None).unwrap_or(Params::DEFAULT)
    }
}

/// Hashes `password` with a fresh random salt; returns the PHC string.
pub(crate) fn hash(password: &str) -> Result<String, Error> {
    hash_with(password, params())
}

fn hash_with(password: &str, params: Params) -> Result<String, Error> {
    let mut salt = [0u8; SALT_LEN];
    crate::users::fill_random(&mut salt);
    let salt = SaltString::encode_b64(&salt)?;
    let output = compute(
        password.as_bytes(),
        salt.as_salt(),
        Version::V0x13,
        params.clone(),
    )?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params)?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(phc.to_string())
}

/// True when `password` matches the PHC string `phc`. False for a wrong password and for
/// anything that is not an argon2id PHC string within sane cost limits.
pub(crate) fn verify(password: &str, phc: &str) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    if !matches!(Algorithm::try_from(hash.algorithm), Ok(Algorithm::Argon2id)) {
        return false;
    }
    let version = match hash.version.map(Version::try_from) {
        None => Version::V0x13,
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let Ok(params) = Params::try_from(&hash) else {
        return false;
    };
    if params.m_cost() > MAX_M_COST || params.t_cost() > MAX_T_COST {
        return false;
    }
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
        return false;
    };
    // `Output`'s equality is constant time.
    compute(password.as_bytes(), salt, version, params).is_ok_and(|output| output == expected)
}

/// A hash of a random password with the current cost, made once. Unknown usernames are
/// verified against it, so a login takes as long whether or not the user exists.
pub(crate) fn dummy() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let mut secret = [0u8; 16];
        crate::users::fill_random(&mut secret);
        // Only fails on invalid parameters, which are constants; an empty string then makes
        // every unknown-user check fail fast, which is still correct.
        hash(&hex::encode(secret)).unwrap_or_default()
    })
}

/// Runs argon2id over `password` and `salt` with `params`.
fn compute(
    password: &[u8],
    salt: Salt<'_>,
    version: Version,
    params: Params,
) -> Result<Output, Error> {
    let mut salt_buf = [0u8; Salt::MAX_LENGTH];
    let salt = salt.decode_b64(&mut salt_buf)?;
    let output_len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let mut memory = work_memory(params.block_count());
    let argon2 = Argon2::new(Algorithm::Argon2id, version, params);
    Output::init_with(output_len, |out| {
        Ok(argon2.hash_password_into_with_memory(password, salt, out, &mut memory)?)
    })
}

/// The `blocks` of work memory one hash needs, zeroed.
///
/// The allocation reserves more than glibc's largest dynamic mmap threshold (32 MiB on 64-bit)
/// and touches only what is used. glibc therefore serves it with its own `mmap` and unmaps it
/// when it is dropped, and, because the block is above that limit, freeing it does not raise
/// the threshold. With a plain 19 MiB `Vec` the first free raises the threshold to 19 MiB, every
/// later hash is served from the heap, and the heap was measured to keep about 150 MiB resident
/// after a dozen logins. Other allocators unmap blocks this large as well.
fn work_memory(blocks: usize) -> Vec<Block> {
    const RESERVE: usize = 33 << 20;
    let mut memory = Vec::with_capacity(blocks.max(RESERVE / size_of::<Block>()));
    memory.resize(blocks, Block::default());
    memory
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_wrong_password() {
        let phc = hash("correct horse battery").unwrap();
        assert!(verify("correct horse battery", &phc));
        assert!(!verify("correct horse batterx", &phc));
        assert!(!verify("", &phc));
    }

    #[test]
    fn phc_is_argon2id_with_a_fresh_salt() {
        let a = hash("same password").unwrap();
        let b = hash("same password").unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=256,t=1,p=1$"), "{a}");
        let salt = |phc: &str| phc.split('$').nth(4).unwrap().to_owned();
        assert_ne!(salt(&a), salt(&b));
        assert_ne!(a, b);
        assert!(verify("same password", &a) && verify("same password", &b));
    }

    #[test]
    fn the_production_cost_is_the_crates_default() {
        // What production hashes use (the test build uses a cheap cost instead).
        let phc = hash_with("production", Params::DEFAULT).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify("production", &phc));
        assert!(!verify("productioN", &phc));
    }

    #[test]
    fn verifies_hashes_made_by_the_crates_own_api() {
        use argon2::{PasswordHasher, PasswordVerifier};
        let salt = SaltString::encode_b64(&[7; 16]).unwrap();
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params());
        let theirs = argon2.hash_password(b"interop", &salt).unwrap().to_string();
        assert!(verify("interop", &theirs));
        // And ours verifies with theirs.
        let ours = hash("interop").unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"interop", &parsed)
                .is_ok()
        );
    }

    #[test]
    fn rejects_what_is_not_an_argon2id_hash() {
        assert!(!verify("x", ""));
        assert!(!verify("x", "not a hash"));
        let salt = SaltString::encode_b64(&[7; 16]).unwrap();
        let argon2i = Argon2::new(Algorithm::Argon2i, Version::V0x13, params());
        use argon2::PasswordHasher;
        let other = argon2i.hash_password(b"x", &salt).unwrap().to_string();
        assert!(!verify("x", &other));
        let huge = hash("x").unwrap().replace("m=256", "m=4000000");
        assert!(!verify("x", &huge));
    }

    #[test]
    fn the_dummy_hash_matches_no_likely_password() {
        let d = dummy();
        assert!(d.starts_with("$argon2id$"));
        assert_eq!(d, dummy());
        assert!(!verify("", d));
        assert!(!verify("password", d));
    }

    #[test]
    fn work_memory_is_zeroed_and_sized() {
        let m = work_memory(8);
        assert_eq!(m.len(), 8);
        assert!(m.capacity() * size_of::<Block>() >= 33 << 20);
    }
}
