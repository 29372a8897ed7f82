//! Certificates for TLS tests: PEM files from `rcgen`, and a PKCS12 keystore from the JDK's
//! `keytool` for Flume.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// A self-signed certificate for `localhost`/`127.0.0.1`: (cert.pem, key.pem).
pub fn self_signed_pem(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])?;
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem())?;
    std::fs::write(&key, ck.key_pair.serialize_pem())?;
    Ok((cert, key))
}

/// A PKCS12 keystore (password `changeit`) with a self-signed key for 127.0.0.1, and its
/// certificate as PEM: (keystore.p12, cert.pem).
pub fn keytool_keystore(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let (ks, pem) = (dir.join("keystore.p12"), dir.join("flume-cert.pem"));
    let run = |args: &[&str]| -> Result<()> {
        let out = Command::new("keytool").args(args).output().context(
            "keytool not found: install a JDK (apt-get install -y openjdk-17-jdk-headless)",
        )?;
        if !out.status.success() {
            bail!(
                "keytool {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    };
    let ks_s = ks.display().to_string();
    run(&[
        "-genkeypair",
        "-alias",
        "flume",
        "-keyalg",
        "RSA",
        "-keysize",
        "2048",
        "-validity",
        "2",
        "-dname",
        "CN=127.0.0.1",
        "-ext",
        "SAN=ip:127.0.0.1,dns:localhost",
        "-storetype",
        "PKCS12",
        "-keystore",
        &ks_s,
        "-storepass",
        "changeit",
        "-keypass",
        "changeit",
    ])?;
    run(&[
        "-exportcert",
        "-rfc",
        "-alias",
        "flume",
        "-keystore",
        &ks_s,
        "-storepass",
        "changeit",
        "-file",
        &pem.display().to_string(),
    ])?;
    Ok((ks, pem))
}
