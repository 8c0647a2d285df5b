//! Development transport identities, made by one command
//! (`wardline-dev-pki <dir>`) and by the test kit, so that the demo, compose
//! and the tests run with TLS and NATS identities without a newcomer doing
//! anything.
//!
//! What it makes under `<dir>` (see [`Pki::ensure`]):
//! - `ca.pem`, `ca.key`: a development certificate authority. Trust
//!   `ca.pem` and nothing else; never use it outside development.
//! - `<name>/tls.pem`, `<name>/tls.key` for every [`SERVER_IDENTITIES`]
//!   entry: one certificate per component, valid as a TLS server *and*
//!   client certificate (the services present it for mutual TLS to each
//!   other, to NATS and to PostgreSQL), with the component's host names.
//! - `<identity>/nats.nk` for every [`NATS_IDENTITIES`] entry: the nkey
//!   seed a service signs NATS's challenge with, and `nats/identities.env`:
//!   the public keys as `WARDLINE_NKEY_<IDENTITY>=U...` lines, the
//!   variables `deploy/nats/permissions.conf` binds to its permission
//!   blocks (nats-server reads them from its environment).
//!
//! - `notification/secret-keys`: the key webhook signing secrets are sealed
//!   with at rest (`NOTIFICATION_SECRET_KEYS_FILE`), `dev-1:<base64 of 32
//!   random bytes>`.
//!
//! What must hold:
//! - Idempotent: files that exist are kept, missing ones are made (with the
//!   existing CA), so re-running never invalidates what a running stack uses.
//! - Private keys and seeds are written 0600; nothing secret is printed.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// Components that get a TLS certificate: the four services (gRPC server,
/// and client of NATS, PostgreSQL and each other), NATS, PostgreSQL, the
/// OpenTelemetry collector, and wardctl (a client certificate for mutual
/// TLS).
pub const SERVER_IDENTITIES: &[&str] = &[
    "intake",
    "routing",
    "billing",
    "notification",
    "nats",
    "postgres",
    "otel-collector",
    "wardctl",
];

/// NATS users: one per service, plus `provision` (creates the streams; the
/// only identity with stream administration, also the operator's for
/// wardctl).
pub const NATS_IDENTITIES: &[&str] = &["intake", "routing", "billing", "notification", "provision"];

/// The variable holding an identity's public nkey for nats-server:
/// `WARDLINE_NKEY_<IDENTITY>` (`-` as `_`). Must match
/// `wardline_kit::nats::nkey_variable` (a kit test checks).
pub fn nkey_variable(identity: &str) -> String {
    format!(
        "WARDLINE_NKEY_{}",
        identity.to_uppercase().replace('-', "_")
    )
}

/// Host names a component's certificate is valid for: its compose and
/// Kubernetes service names, the three cluster nodes for NATS, and loopback.
pub fn host_names(component: &str) -> Vec<String> {
    let mut names = vec![
        component.to_owned(),
        format!("{component}.wardline.svc"),
        format!("{component}.wardline.svc.cluster.local"),
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if component == "otel-collector" {
        // compose's collector is Jaeger's all-in-one.
        names.push("jaeger".to_owned());
    }
    if component == "nats" {
        for i in 0..3 {
            names.push(format!("nats-{i}"));
            names.push(format!("nats-{i}.nats-headless"));
            names.push(format!("nats-{i}.nats-headless.wardline.svc"));
            names.push(format!("nats-{i}.nats-headless.wardline.svc.cluster.local"));
        }
    }
    names
}

/// A development CA that can issue certificates.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Wardline development");
    dn.push(DnType::CommonName, "Wardline development CA");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2049, 12, 31);
    params
}

impl Ca {
    /// A new CA with a fresh key.
    pub fn generate() -> Result<Self> {
        let key = KeyPair::generate()?;
        let params = ca_params();
        let pem = params.self_signed(&key)?.pem();
        Ok(Self {
            issuer: Issuer::new(params, key),
            pem,
        })
    }

    /// The CA of `ca.pem`/`ca.key` (the parameters are fixed, so the
    /// issuer name and key identifier match the stored certificate).
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<Self> {
        let key = KeyPair::from_pem(key_pem).context("CA key")?;
        Ok(Self {
            issuer: Issuer::new(ca_params(), key),
            pem: cert_pem.to_owned(),
        })
    }

    /// The CA certificate (PEM): what clients and servers trust.
    pub fn cert_pem(&self) -> &str {
        &self.pem
    }

    /// The CA key (PEM).
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// A certificate for `common_name`, valid for `hosts` (DNS names or IP
    /// addresses), usable as TLS server and client certificate. Returns
    /// `(certificate PEM, key PEM)`.
    pub fn issue(&self, common_name: &str, hosts: &[String]) -> Result<(String, String)> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.subject_alt_names = hosts
            .iter()
            .map(|h| match h.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => Ok(SanType::DnsName(h.clone().try_into()?)),
            })
            .collect::<Result<_, rcgen::Error>>()?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Wardline development");
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(825);
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// A new NATS user nkey: `(seed, public key)`.
pub fn nkey_user() -> Result<(String, String)> {
    let kp = nkeys::KeyPair::new_user();
    let seed = kp.seed().map_err(|e| anyhow::anyhow!("nkey seed: {e}"))?;
    Ok((seed, kp.public_key()))
}

/// The public key of an nkey seed.
pub fn nkey_public(seed: &str) -> Result<String> {
    Ok(nkeys::KeyPair::from_seed(seed.trim())
        .map_err(|e| anyhow::anyhow!("not an nkey seed: {e}"))?
        .public_key())
}

/// `WARDLINE_NKEY_<IDENTITY>=<public key>` lines for nats-server's
/// environment, from `(public key, identity)` pairs.
pub fn identities_env(users: &[(String, String)]) -> String {
    let mut out = String::from(
        "# Public nkeys of this installation's NATS identities (wardline-dev-pki).\n\
         # nats-server reads them from its environment (deploy/nats/permissions.conf).\n",
    );
    for (public, identity) in users {
        out.push_str(&format!("{}={public}\n", nkey_variable(identity)));
    }
    out
}

/// A development PKI in a directory.
pub struct Pki {
    dir: PathBuf,
}

/// Writes `contents` to `path` unless it exists; private files get 0600.
fn write_new(path: &Path, contents: &str, private: bool) -> Result<bool> {
    if path.exists() {
        return Ok(false);
    }
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
    }
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(if private { 0o600 } else { 0o644 });
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("create {}", path.display()))?;
    f.write_all(contents.as_bytes())
        .with_context(|| format!("write {}", path.display()))?;
    Ok(true)
}

impl Pki {
    /// The PKI under `dir` (nothing is read or written yet).
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `ca.pem`.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// `<component>/tls.pem`.
    pub fn cert_file(&self, component: &str) -> PathBuf {
        self.dir.join(component).join("tls.pem")
    }

    /// `<component>/tls.key`.
    pub fn key_file(&self, component: &str) -> PathBuf {
        self.dir.join(component).join("tls.key")
    }

    /// `<identity>/nats.nk`.
    pub fn nkey_file(&self, identity: &str) -> PathBuf {
        self.dir.join(identity).join("nats.nk")
    }

    /// `nats/identities.env`.
    pub fn identities_file(&self) -> PathBuf {
        self.dir.join("nats").join("identities.env")
    }

    /// Makes whatever is missing: the CA, a certificate for each of
    /// `components` (with [`host_names`] plus `extra_hosts`), an nkey for
    /// each of `identities`, and the NATS identities file. Returns the paths
    /// written (empty when everything existed).
    pub fn ensure(
        &self,
        components: &[&str],
        identities: &[&str],
        extra_hosts: &[String],
    ) -> Result<Vec<PathBuf>> {
        let mut written = Vec::new();
        let (ca_cert, ca_key) = (self.ca_file(), self.dir.join("ca.key"));
        let ca = if ca_cert.exists() && ca_key.exists() {
            Ca::load(
                &fs::read_to_string(&ca_cert)?,
                &fs::read_to_string(&ca_key)?,
            )?
        } else {
            let ca = Ca::generate()?;
            // A new CA invalidates every certificate of an older one.
            for c in components {
                let _ = fs::remove_file(self.cert_file(c));
                let _ = fs::remove_file(self.key_file(c));
            }
            let _ = fs::remove_file(&ca_cert);
            let _ = fs::remove_file(&ca_key);
            write_new(&ca_key, &ca.key_pem(), true)?;
            write_new(&ca_cert, ca.cert_pem(), false)?;
            written.extend([ca_key, ca_cert]);
            ca
        };
        for c in components {
            let (cert, key) = (self.cert_file(c), self.key_file(c));
            if cert.exists() && key.exists() {
                continue;
            }
            let mut hosts = host_names(c);
            hosts.extend(extra_hosts.iter().cloned());
            let (cert_pem, key_pem) = ca.issue(c, &hosts)?;
            let _ = fs::remove_file(&cert);
            let _ = fs::remove_file(&key);
            write_new(&key, &key_pem, true)?;
            write_new(&cert, &cert_pem, false)?;
            written.extend([key, cert]);
        }
        for id in identities {
            let path = self.nkey_file(id);
            if !path.exists() {
                let (seed, _) = nkey_user()?;
                write_new(&path, &format!("{seed}\n"), true)?;
                written.push(path);
            }
        }
        if !identities.is_empty() {
            // Every identity in the directory, so adding one keeps the others.
            let mut users = Vec::new();
            for entry in fs::read_dir(&self.dir)? {
                let entry = entry?;
                let seed_file = entry.path().join("nats.nk");
                if let (Ok(seed), Some(name)) =
                    (fs::read_to_string(&seed_file), entry.file_name().to_str())
                {
                    users.push((nkey_public(&seed)?, name.to_owned()));
                }
            }
            users.sort_by(|a, b| a.1.cmp(&b.1));
            let env_file = self.identities_file();
            let fresh = identities_env(&users);
            if fs::read_to_string(&env_file).ok().as_deref() != Some(fresh.as_str()) {
                let _ = fs::remove_file(&env_file);
                write_new(&env_file, &fresh, false)?;
                written.push(env_file);
            }
        }
        Ok(written)
    }

    /// Hands `<dir>/<component>` and the files in it to `uid:gid` (compose:
    /// each container reads its own key as its own user; keys stay 0600).
    #[cfg(unix)]
    pub fn chown(&self, component: &str, uid: u32, gid: u32) -> Result<()> {
        let dir = self.dir.join(component);
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
            .with_context(|| format!("chown {}", dir.display()))?;
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            std::os::unix::fs::chown(&path, Some(uid), Some(gid))
                .with_context(|| format!("chown {}", path.display()))?;
        }
        Ok(())
    }

    /// `notification/secret-keys`.
    pub fn sealing_keys_file(&self) -> PathBuf {
        self.dir.join("notification").join("secret-keys")
    }

    /// Makes the sealing key file if it is missing (never replaced: the
    /// secrets sealed under it would no longer open).
    pub fn ensure_sealing_keys(&self) -> Result<Option<PathBuf>> {
        use base64::Engine as _;
        let path = self.sealing_keys_file();
        let key: [u8; 32] = rand::random();
        let line = format!(
            "dev-1:{}\n",
            base64::engine::general_purpose::STANDARD.encode(key)
        );
        Ok(write_new(&path, &line, true)?.then_some(path))
    }

    /// [`Self::ensure`] for everything Wardline's demo and compose run, and
    /// notification's sealing key.
    pub fn ensure_all(&self, extra_hosts: &[String]) -> Result<Vec<PathBuf>> {
        let mut written = self.ensure(SERVER_IDENTITIES, NATS_IDENTITIES, extra_hosts)?;
        written.extend(self.ensure_sealing_keys()?);
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ensure_is_idempotent_and_keeps_secrets_private() {
        let dir = tempfile_dir();
        let pki = Pki::at(&dir);
        let first = pki
            .ensure(&["intake"], &["intake", "provision"], &[])
            .unwrap();
        assert!(first.contains(&pki.ca_file()));
        assert!(pki.nkey_file("provision").exists());
        let second = pki
            .ensure(&["intake"], &["intake", "provision"], &[])
            .unwrap();
        assert!(second.is_empty(), "{second:?}");
        let users = fs::read_to_string(pki.identities_file()).unwrap();
        assert!(users.contains("WARDLINE_NKEY_PROVISION=U"), "{users}");
        let seed = fs::read_to_string(pki.nkey_file("intake")).unwrap();
        assert!(users.contains(&nkey_public(&seed).unwrap()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(pki.key_file("intake"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // A component added later is issued by the same CA.
        let third = pki.ensure(&["intake", "routing"], &[], &[]).unwrap();
        assert_eq!(third.len(), 2, "{third:?}");
        assert!(!third.contains(&pki.ca_file()));
        let _ = fs::remove_dir_all(dir);
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "wardline-devpki-test-{}-{}",
            std::process::id(),
            time::OffsetDateTime::now_utc().unix_timestamp_nanos()
        ));
        fs::create_dir_all(&d).unwrap();
        d
    }
}
