//! `wardctl token`: mint a development token; `wardctl dev-issuer init`:
//! the development issuer that signs them.

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use serde_json::json;
use wardline_kit::auth::signing::{Claims, DevIssuer};
use wardline_kit::auth::{ALL_TENANTS, Role, VENDOR_ROLES};

use super::{Context, print_json};
use crate::cli::{DevIssuerCommand, RoleArg, TokenArgs};

/// Prints a token for `--subject` on `--tenant` with the given roles. A
/// vendor_admin token without `--tenant` covers every tenant (`*`).
pub fn run(ctx: &Context, args: &TokenArgs) -> Result<()> {
    let tenant = token_tenant(ctx.tenant.as_deref(), &args.roles)?;
    let roles: Vec<Role> = args.roles.iter().map(|r| Role::from(*r)).collect();
    let ttl = Duration::from_secs(args.ttl_minutes * 60);
    let token = ctx
        .dev_signer()?
        .sign(&Claims::new(&args.subject, tenant, &roles, ttl))
        .context("cannot mint a token")?;
    if ctx.json {
        let expires = chrono::Utc::now() + chrono::Duration::minutes(args.ttl_minutes as i64);
        print_json(&json!({
            "token": token,
            "subject": args.subject,
            "tenant": tenant,
            "roles": roles,
            "expires_at": expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }));
    } else {
        println!("{token}");
    }
    Ok(())
}

/// `wardctl dev-issuer ...`.
pub fn dev_issuer(ctx: &Context, cmd: &DevIssuerCommand) -> Result<()> {
    match cmd {
        DevIssuerCommand::Init { dir } => {
            let issuer = DevIssuer::at(dir);
            let written = issuer.ensure().with_context(|| {
                format!("cannot make the development issuer in {}", dir.display())
            })?;
            if ctx.json {
                print_json(&json!({
                    "key_file": issuer.key_file(),
                    "jwks_file": issuer.jwks_file(),
                    "written": written,
                }));
            } else {
                println!(
                    "services:  WARDLINE_JWKS_FILE={} WARDLINE_JWT_ISSUER={}",
                    issuer.jwks_file().display(),
                    wardline_kit::auth::settings::DEV_ISSUER
                );
                println!(
                    "wardctl:   WARDLINE_ENV=development WARDLINE_DEV_ISSUER_KEY={}",
                    issuer.key_file().display()
                );
            }
            Ok(())
        }
    }
}

fn token_tenant<'a>(tenant: Option<&'a str>, roles: &[RoleArg]) -> Result<&'a str> {
    match tenant {
        // The services refuse such a token (UNAUTHENTICATED): say so here.
        Some(ALL_TENANTS)
            if roles
                .iter()
                .any(|r| !VENDOR_ROLES.contains(&Role::from(*r))) =>
        {
            bail!(
                "--tenant '*' is for the vendor roles only (vendor_admin, billing); \
                 other roles work one tenant: give its slug"
            )
        }
        Some(t) => Ok(t),
        None if roles.contains(&RoleArg::VendorAdmin) => Ok(ALL_TENANTS),
        None => bail!(
            "a token needs --tenant (use --tenant '*' with --role vendor_admin for all tenants)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendor_tokens_default_to_all_tenants() {
        assert_eq!(token_tenant(None, &[RoleArg::VendorAdmin]).unwrap(), "*");
        assert_eq!(
            token_tenant(Some("stmarys"), &[RoleArg::VendorAdmin]).unwrap(),
            "stmarys"
        );
        assert!(token_tenant(None, &[RoleArg::Analyst]).is_err());
        assert!(token_tenant(Some("*"), &[RoleArg::VendorAdmin, RoleArg::Analyst]).is_err());
        assert_eq!(token_tenant(Some("*"), &[RoleArg::Billing]).unwrap(), "*");
    }
}
