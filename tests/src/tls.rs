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

/// A test CA and a certificate it signed for `localhost`/`127.0.0.1`: (ca.pem, cert.pem,
/// key.pem), for clients that verify the server against a CA (GnuTLS, curl).
pub fn ca_signed_pem(dir: &Path) -> Result<(PathBuf, PathBuf, PathBuf)> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "sluice test CA");
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let mut leaf_params = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let leaf_key = KeyPair::generate()?;
    let leaf = leaf_params.signed_by(&leaf_key, &ca_cert, &ca_key)?;
    let (ca, cert, key) = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server-key.pem"),
    );
    std::fs::write(&ca, ca_cert.pem())?;
    std::fs::write(&cert, leaf.pem())?;
    std::fs::write(&key, leaf_key.serialize_pem())?;
    Ok((ca, cert, key))
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

/// Adds an AES secret key `alias` (`bits` long, protected by `key_password`) to the JCEKS
/// store at `store`, as Flume's user guide makes the file channel's keys:
/// `keytool -genseckey -alias key-0 -keypass … -keyalg AES -keysize 128 -validity 9000
/// -keystore test.keystore -storetype jceks -storepass …`.
pub fn jceks_secret_key(
    store: &Path,
    store_password: &str,
    alias: &str,
    key_password: &str,
    bits: u32,
) -> Result<()> {
    let store = store.display().to_string();
    let bits = bits.to_string();
    keytool(&[
        "-genseckey",
        "-alias",
        alias,
        "-keypass",
        key_password,
        "-keyalg",
        "AES",
        "-keysize",
        &bits,
        "-validity",
        "9000",
        "-keystore",
        &store,
        "-storetype",
        "jceks",
        "-storepass",
        store_password,
    ])
}

/// Runs `keytool` with `args`; its failure names the arguments and its output.
fn keytool(args: &[&str]) -> Result<()> {
    let out = Command::new("keytool")
        .args(args)
        .output()
        .context("keytool not found: install a JDK (apt-get install -y openjdk-17-jdk-headless)")?;
    if !out.status.success() {
        bail!(
            "keytool {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The password of every store [`KafkaStores`] writes.
pub const STORE_PASSWORD: &str = "changeit";

/// A test CA and the Java stores a TLS Kafka test needs, all made with `keytool` as a Kafka
/// or Flume operator makes them.
#[derive(Clone, Debug)]
pub struct KafkaStores {
    /// The CA's certificate, PEM.
    pub ca_pem: PathBuf,
    /// The broker's key and certificate (signed by the CA, SAN 127.0.0.1 and localhost),
    /// PKCS12.
    pub broker_keystore: PathBuf,
    /// The CA's certificate in a JKS trust store (Java 8's default format).
    pub truststore_jks: PathBuf,
    /// The CA's certificate in a PKCS12 trust store (keytool's default since Java 9).
    pub truststore_p12: PathBuf,
    /// A client key and certificate signed by the CA, JKS.
    pub client_keystore_jks: PathBuf,
    /// Another CA's certificate, JKS: a trust store the broker's certificate fails.
    pub other_truststore_jks: PathBuf,
}

impl KafkaStores {
    /// Makes the CA, the broker's and a client's keys, and the trust stores, in `dir`.
    pub fn create(dir: &Path) -> Result<Self> {
        let p = |name: &str| dir.join(name);
        let s = |path: &Path| path.display().to_string();
        let pw = STORE_PASSWORD;
        let common = ["-storepass", pw, "-keypass", pw, "-noprompt"];
        let genkey = |alias: &str, dname: &str, store: &Path, kind: &str, ca: bool| {
            let mut args = vec![
                "-genkeypair",
                "-alias",
                alias,
                "-keyalg",
                "RSA",
                "-keysize",
                "2048",
                "-validity",
                "3",
                "-dname",
                dname,
                "-storetype",
                kind,
            ];
            if ca {
                args.extend(["-ext", "bc:c"]);
            }
            let store = s(store);
            args.extend(["-keystore", &store]);
            args.extend(common);
            keytool(&args)
        };
        let ca = p("ca.p12");
        let ca_pem = p("ca.pem");
        genkey("ca", "CN=sluice test CA", &ca, "PKCS12", true)?;
        keytool(&[
            "-exportcert",
            "-rfc",
            "-alias",
            "ca",
            "-keystore",
            &s(&ca),
            "-storepass",
            pw,
            "-file",
            &s(&ca_pem),
        ])?;
        // A key signed by the CA, with the CA's certificate before it in the chain.
        let signed = |alias: &str, dname: &str, store: &Path, kind: &str, san: Option<&str>| {
            genkey(alias, dname, store, kind, false)?;
            let csr = p(&format!("{alias}.csr"));
            let crt = p(&format!("{alias}.crt"));
            keytool(&[
                "-certreq",
                "-alias",
                alias,
                "-keystore",
                &s(store),
                "-storepass",
                pw,
                "-file",
                &s(&csr),
            ])?;
            let ca_s = s(&ca);
            let mut gencert = vec![
                "-gencert",
                "-rfc",
                "-alias",
                "ca",
                "-keystore",
                &ca_s,
                "-storepass",
                pw,
                "-validity",
                "3",
                "-infile",
            ];
            let (csr_s, crt_s) = (s(&csr), s(&crt));
            gencert.extend([csr_s.as_str(), "-outfile", crt_s.as_str()]);
            if let Some(san) = san {
                gencert.extend(["-ext", san]);
            }
            keytool(&gencert)?;
            let store_s = s(store);
            let ca_s = s(&ca_pem);
            let mut import_ca = vec![
                "-importcert",
                "-alias",
                "ca",
                "-file",
                &ca_s,
                "-keystore",
                &store_s,
                "-storetype",
                kind,
            ];
            import_ca.extend(common);
            keytool(&import_ca)?;
            let mut import = vec![
                "-importcert",
                "-alias",
                alias,
                "-file",
                &crt_s,
                "-keystore",
                &store_s,
                "-storetype",
                kind,
            ];
            import.extend(common);
            keytool(&import)
        };
        let broker_keystore = p("broker.p12");
        signed(
            "broker",
            "CN=localhost",
            &broker_keystore,
            "PKCS12",
            Some("SAN=ip:127.0.0.1,dns:localhost"),
        )?;
        let client_keystore_jks = p("client.jks");
        signed(
            "client",
            "CN=sluice-client",
            &client_keystore_jks,
            "JKS",
            None,
        )?;
        let trust = |store: &Path, kind: &str, cert: &Path| {
            let (store_s, cert_s) = (s(store), s(cert));
            let mut args = vec![
                "-importcert",
                "-alias",
                "ca",
                "-file",
                &cert_s,
                "-keystore",
                &store_s,
                "-storetype",
                kind,
            ];
            args.extend(common);
            keytool(&args)
        };
        let truststore_jks = p("truststore.jks");
        let truststore_p12 = p("truststore.p12");
        trust(&truststore_jks, "JKS", &ca_pem)?;
        trust(&truststore_p12, "PKCS12", &ca_pem)?;
        let other = p("other-ca.p12");
        let other_pem = p("other-ca.pem");
        genkey("other", "CN=another CA", &other, "PKCS12", true)?;
        keytool(&[
            "-exportcert",
            "-rfc",
            "-alias",
            "other",
            "-keystore",
            &s(&other),
            "-storepass",
            pw,
            "-file",
            &s(&other_pem),
        ])?;
        let other_truststore_jks = p("other-truststore.jks");
        trust(&other_truststore_jks, "JKS", &other_pem)?;
        Ok(Self {
            ca_pem,
            broker_keystore,
            truststore_jks,
            truststore_p12,
            client_keystore_jks,
            other_truststore_jks,
        })
    }
}
