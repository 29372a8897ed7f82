//! File channel encryption (Flume's `encryption.*` keys): each event frame's data (headers and
//! body) is encrypted with AES in CTR mode under the active key, with a random IV per frame,
//! and names the key it used, so frames written under an older key still decrypt after a
//! rotation as long as that key stays listed.
//!
//! Encrypted frame data: `FF FF FF FF` (a header count no plain frame can have), the key
//! alias (u8 length + bytes), the 16-byte IV, then the ciphertext of the plain frame data.
//! The frame's CRC32C covers the encrypted bytes. CTR mode has no authentication (as in
//! Flume): the CRC detects damage, not tampering.
//!
//! Keys come from Flume's `JCEKSFILE` provider: a JCEKS store made with `keytool -genseckey
//! -storetype JCEKS`, read by sluice itself ([`crate::kafka::stores::jceks_secret_keys`]).

use std::path::{Path, PathBuf};

use openssl::symm::{Cipher, Crypter, Mode};

use crate::config::{ConfigError, Props};

/// The first four bytes of an encrypted frame's data.
pub(crate) const ENCRYPTED_MARKER: [u8; 4] = [0xFF; 4];
const IV_LEN: usize = 16;

/// The keys of an encrypted file channel; `Debug` never shows them.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Encryption {
    /// (alias, AES key of 16, 24 or 32 bytes); the active one first.
    keys: Vec<(String, Vec<u8>)>,
}

impl std::fmt::Debug for Encryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let aliases: Vec<&str> = self.keys.iter().map(|(a, _)| a.as_str()).collect();
        f.debug_struct("Encryption")
            .field("active", &aliases.first())
            .field("keys", &aliases)
            .finish()
    }
}

fn cipher(key: &[u8]) -> Option<Cipher> {
    match key.len() {
        16 => Some(Cipher::aes_128_ctr()),
        24 => Some(Cipher::aes_192_ctr()),
        32 => Some(Cipher::aes_256_ctr()),
        _ => None,
    }
}

/// A password file's content (Flume trims it).
fn password_file(p: &Props, key: &str, path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| p.error(key, format!("cannot read {}: {e}", path.display())))?;
    Ok(text.trim().to_string())
}

impl Encryption {
    /// `encryption.*`: `None` when no encryption key is set.
    pub(crate) fn from_props(p: &Props) -> Result<Option<Self>, ConfigError> {
        if p.children("encryption.").is_empty() {
            return Ok(None);
        }
        let active = p.required("encryption.activeKey")?;
        let provider = p.string("encryption.cipherProvider", "AESCTRNOPADDING");
        if !provider.eq_ignore_ascii_case("AESCTRNOPADDING") {
            return Err(p.error(
                "encryption.cipherProvider",
                format!(
                    "`{provider}` is not a cipher provider; Flume's only one is AESCTRNOPADDING"
                ),
            ));
        }
        let key_provider = p.required("encryption.keyProvider")?;
        if !key_provider.eq_ignore_ascii_case("JCEKSFILE") {
            return Err(p.error(
                "encryption.keyProvider",
                format!("`{key_provider}` is not a key provider; Flume's only one is JCEKSFILE"),
            ));
        }
        let store = PathBuf::from(p.required("encryption.keyProvider.keyStoreFile")?);
        let store_pw_key = "encryption.keyProvider.keyStorePasswordFile";
        let store_password = password_file(p, store_pw_key, Path::new(&p.required(store_pw_key)?))?;
        let mut aliases: Vec<String> = p
            .list("encryption.keyProvider.keys")
            .into_iter()
            .filter(|a| !a.is_empty())
            .collect();
        if !aliases.iter().any(|a| a == &active) {
            return Err(p.error(
                "encryption.activeKey",
                format!("`{active}` is not listed in encryption.keyProvider.keys"),
            ));
        }
        aliases.retain(|a| a != &active);
        aliases.insert(0, active);
        let mut key_passwords = Vec::new();
        for a in &aliases {
            let k = format!("encryption.keyProvider.keys.{a}.passwordFile");
            if let Some(f) = p.get(&k).filter(|v| !v.is_empty()) {
                key_passwords.push((a.clone(), password_file(p, &k, Path::new(f))?));
            }
        }
        let password_for = |alias: &str| {
            key_passwords
                .iter()
                .find(|(a, _)| a == alias)
                .map_or_else(|| store_password.clone(), |(_, pw)| pw.clone())
        };
        let keys = crate::kafka::stores::jceks_secret_keys(
            &store,
            &store_password,
            &aliases,
            &password_for,
        )
        .map_err(|e| p.error("encryption.keyProvider.keyStoreFile", e.to_string()))?;
        for (alias, key) in &keys {
            if cipher(key).is_none() || alias.len() > 255 {
                return Err(p.error(
                    "encryption.keyProvider.keys",
                    format!(
                        "key `{alias}` is {} bytes; AES keys are 16, 24 or 32 bytes \
                         (keytool -genseckey -keyalg AES -keysize 128|192|256)",
                        key.len()
                    ),
                ));
            }
        }
        Ok(Some(Self { keys }))
    }

    /// Appends the encrypted form of `plain` to `out`.
    pub(crate) fn encrypt(
        &self,
        plain: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), openssl::error::ErrorStack> {
        let Some((alias, key)) = self.keys.first() else {
            out.extend_from_slice(plain);
            return Ok(());
        };
        let Some(c) = cipher(key) else {
            return Err(openssl::error::ErrorStack::get());
        };
        let mut iv = [0u8; IV_LEN];
        openssl::rand::rand_bytes(&mut iv)?;
        out.extend_from_slice(&ENCRYPTED_MARKER);
        out.push(alias.len() as u8);
        out.extend_from_slice(alias.as_bytes());
        out.extend_from_slice(&iv);
        let start = out.len();
        out.resize(start + plain.len() + c.block_size(), 0);
        let mut crypter = Crypter::new(c, Mode::Encrypt, key, Some(&iv))?;
        let n = crypter.update(plain, &mut out[start..])?;
        let m = crypter.finalize(&mut out[start + n..])?;
        out.truncate(start + n + m);
        Ok(())
    }

    /// The plain frame data of an encrypted frame; `None` when its key is not configured or
    /// the frame is malformed.
    pub(crate) fn decrypt(&self, data: &[u8]) -> Result<Vec<u8>, DecryptError> {
        let rest = data
            .strip_prefix(&ENCRYPTED_MARKER)
            .ok_or(DecryptError::Malformed)?;
        let (&n, rest) = rest.split_first().ok_or(DecryptError::Malformed)?;
        let alias = rest.get(..usize::from(n)).ok_or(DecryptError::Malformed)?;
        let rest = &rest[usize::from(n)..];
        let iv = rest.get(..IV_LEN).ok_or(DecryptError::Malformed)?;
        let cipher_text = &rest[IV_LEN..];
        let alias = String::from_utf8_lossy(alias);
        let (_, key) = self
            .keys
            .iter()
            .find(|(a, _)| *a == alias)
            .ok_or_else(|| DecryptError::UnknownKey(alias.to_string()))?;
        let c = cipher(key).ok_or(DecryptError::Malformed)?;
        openssl::symm::decrypt(c, key, Some(iv), cipher_text).map_err(|_| DecryptError::Malformed)
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum DecryptError {
    #[error("encrypted with key `{0}`, which encryption.keyProvider.keys does not list")]
    UnknownKey(String),
    #[error("malformed encrypted frame")]
    Malformed,
}

/// Whether frame data is encrypted.
pub(crate) fn is_encrypted(data: &[u8]) -> bool {
    data.starts_with(&ENCRYPTED_MARKER)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(keys: &[(&str, &[u8])]) -> Encryption {
        Encryption {
            keys: keys
                .iter()
                .map(|(a, k)| (a.to_string(), k.to_vec()))
                .collect(),
        }
    }

    #[test]
    fn round_trip_and_rotation() -> Result<(), Box<dyn std::error::Error>> {
        let old = enc(&[("key-0", &[7u8; 16])]);
        let mut frame = Vec::new();
        old.encrypt(b"\x00\x00\x00\x00secret body", &mut frame)?;
        assert!(is_encrypted(&frame));
        assert!(!frame.windows(6).any(|w| w == b"secret"));
        // Rotated: key-1 active, key-0 still listed.
        let new = enc(&[("key-1", &[9u8; 32]), ("key-0", &[7u8; 16])]);
        assert_eq!(new.decrypt(&frame)?, b"\x00\x00\x00\x00secret body");
        let mut f2 = Vec::new();
        new.encrypt(b"x", &mut f2)?;
        assert!(matches!(old.decrypt(&f2), Err(DecryptError::UnknownKey(a)) if a == "key-1"));
        assert!(matches!(
            new.decrypt(&frame[..10]),
            Err(DecryptError::Malformed)
        ));
        assert!(
            !format!("{new:?}").contains('9'),
            "Debug shows no key bytes"
        );
        Ok(())
    }
}
