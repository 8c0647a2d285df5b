//! `wardline-dev-pki [DIR] [--host NAME]...`: makes (once) the development
//! CA, the TLS certificates, the NATS identities and the development token
//! issuer (`issuer/es256.key` and `issuer/jwks.json`) of the demo and
//! compose under DIR (default `.wardline/pki`). Re-running keeps what exists.
//! `--host` adds a host name or IP address to every certificate;
//! `--chown COMPONENT=UID:GID` hands a component's directory to the user
//! its container runs as (compose: PostgreSQL reads its key as uid 999).

use anyhow::{Result, bail};

fn main() -> Result<()> {
    let mut dir = None;
    let mut hosts = Vec::new();
    let mut owners: Vec<(String, u32, u32)> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--host" => match args.next() {
                Some(h) => hosts.push(h),
                None => bail!("--host needs a value"),
            },
            "--chown" => {
                let spec = args.next().unwrap_or_default();
                let parsed = spec.split_once('=').and_then(|(c, ids)| {
                    let (u, g) = ids.split_once(':')?;
                    Some((c.to_owned(), u.parse().ok()?, g.parse().ok()?))
                });
                match parsed {
                    Some(o) => owners.push(o),
                    None => bail!("--chown expects COMPONENT=UID:GID, not {spec:?}"),
                }
            }
            "-h" | "--help" => {
                println!(
                    "usage: wardline-dev-pki [DIR] [--host NAME]... [--chown COMPONENT=UID:GID]...\n\
                     Makes the development CA, certificates and NATS nkeys under DIR\n\
                     (default .wardline/pki); existing files are kept."
                );
                return Ok(());
            }
            a if a.starts_with('-') => bail!("unknown option {a}"),
            a if dir.is_none() => dir = Some(a.to_owned()),
            a => bail!("unexpected argument {a}"),
        }
    }
    let pki = wardline_devpki::Pki::at(dir.unwrap_or_else(|| ".wardline/pki".into()));
    let mut written = pki.ensure_all(&hosts)?;
    // The development token issuer: its JWKS is what the services verify
    // (WARDLINE_JWKS_FILE), its key what wardctl signs with in development.
    written.extend(wardline_kit::auth::signing::DevIssuer::at(pki.dir().join("issuer")).ensure()?);
    for (component, uid, gid) in &owners {
        pki.chown(component, *uid, *gid)?;
    }
    if written.is_empty() {
        println!("development PKI in {} is complete", pki.dir().display());
    } else {
        println!(
            "development PKI in {}: made {} files (CA: {})",
            pki.dir().display(),
            written.len(),
            pki.ca_file().display()
        );
    }
    Ok(())
}
