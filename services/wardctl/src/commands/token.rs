//! `wardctl token`: mint a development token.

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use serde_json::json;
use wardline_kit::auth::{ALL_TENANTS, Role, mint};

use super::{Context, print_json};
use crate::cli::{RoleArg, TokenArgs};

/// Prints a token for `--subject` on `--tenant` with the given roles. A
/// vendor_admin token without `--tenant` covers every tenant (`*`).
pub fn run(ctx: &Context, args: &TokenArgs) -> Result<()> {
    let tenant = token_tenant(ctx.tenant.as_deref(), &args.roles)?;
    let roles: Vec<Role> = args.roles.iter().map(|r| Role::from(*r)).collect();
    let ttl = Duration::from_secs(args.ttl_hours * 3600);
    let token =
        mint(ctx.secret()?, &args.subject, tenant, &roles, ttl).context("cannot mint a token")?;
    if ctx.json {
        let expires = chrono::Utc::now() + chrono::Duration::hours(args.ttl_hours as i64);
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

fn token_tenant<'a>(tenant: Option<&'a str>, roles: &[RoleArg]) -> Result<&'a str> {
    match tenant {
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
    }
}
