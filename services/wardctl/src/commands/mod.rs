//! The commands, and the context they share: where intake, routing,
//! billing and notification are, who wardctl acts as, the tenant, the idempotency key and how
//! to print.

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use secrecy::SecretString;
use tracing::Instrument as _;
use wardline_kit::auth::signing::{Claims, Signer};
use wardline_kit::auth::{ALL_TENANTS, Role};

use crate::cli::{Cli, Command};
use crate::grpc::{self, Session};

/// Up to `$limit` items of a paged list call, following `next_page_token`
/// (see [`collect_pages`]): `paged!(limit, session.tickets(), list_tickets,
/// req, tickets)` calls `list_tickets` with `req` (its page size and token
/// set per page) and collects each page's `tickets`.
macro_rules! paged {
    ($limit:expr, $client:expr, $method:ident, $req:expr, $items:ident) => {{
        let req = $req;
        $crate::commands::collect_pages($limit, |page_size, page_token| {
            let mut req = req.clone();
            req.page_size = page_size;
            req.page_token = page_token;
            let mut client = $client;
            async move {
                let page = client.$method(req).await?.into_inner();
                Ok((page.$items, page.next_page_token))
            }
        })
        .await
    }};
}

pub mod analyst;
pub mod audit;
pub mod billing;
pub mod notification;
pub mod routing;
pub mod tenant;
pub mod ticket;
pub mod token;
pub mod token_source;

/// Subject of the tokens wardctl mints for itself.
pub const WARDCTL_SUBJECT: &str = "wardctl";
/// Lifetime of the tokens wardctl mints for itself.
pub const SELF_TOKEN_TTL: Duration = Duration::from_secs(30 * 60);

/// Everything a command needs besides its own arguments.
#[derive(Debug, Clone)]
pub struct Context {
    /// Intake's gRPC URL.
    pub intake_url: String,
    /// Routing's gRPC URL.
    pub routing_url: String,
    /// Billing's gRPC URL.
    pub billing_url: String,
    /// Notification's gRPC URL.
    pub notification_url: String,
    /// NATS URL.
    pub nats_url: String,
    secret: Option<SecretString>,
    issuer_key: Option<std::path::PathBuf>,
    development: bool,
    token: Option<SecretString>,
    client: Option<token_source::ClientCredentials>,
    /// `--tenant`.
    pub tenant: Option<String>,
    request_id: Option<String>,
    /// Connection and per-call timeout.
    pub timeout: Duration,
    /// JSON instead of tables.
    pub json: bool,
    /// Times in UTC only.
    pub utc: bool,
}

impl Context {
    /// The context of a parsed command line.
    pub fn from_cli(cli: &Cli) -> Self {
        Self {
            intake_url: cli.intake_url.clone(),
            routing_url: cli.routing_url.clone(),
            billing_url: cli.billing_url.clone(),
            notification_url: cli.notification_url.clone(),
            nats_url: cli.nats_url.clone(),
            secret: cli.secret.clone(),
            issuer_key: cli.issuer_key.clone(),
            // The services' own reading of WARDLINE_ENV (one parser).
            development: wardline_kit::tls::Profile::from_env(
                &wardline_kit::config::Env::from_pairs([("WARDLINE_ENV", cli.profile.as_str())]),
            )
            .is_ok_and(|p| !p.is_production()),
            token: cli.token.clone(),
            client: token_source::ClientCredentials::from_cli(cli),
            tenant: cli.tenant.clone().filter(|t| !t.is_empty()),
            request_id: cli.request_id.clone(),
            timeout: cli.timeout(),
            json: cli.json,
            utc: cli.utc,
        }
    }

    /// The idempotency key of this invocation's mutating call: `--request-id`
    /// or a fresh UUIDv4 (so a retry of the same command line is a new request
    /// unless the user pins the key).
    pub fn request_id(&self) -> String {
        self.request_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
    }

    /// The development signer (--issuer-key or --secret); refused outside
    /// development, where tokens come from the identity provider.
    pub fn dev_signer(&self) -> Result<Signer> {
        if !self.development {
            bail!(
                "wardctl mints tokens only with WARDLINE_ENV=development (or --env development); \
                 in production give a token from your identity provider: --token / WARDLINE_TOKEN, \
                 or --client-id with WARDLINE_CLIENT_SECRET and --token-url (client credentials)"
            );
        }
        Signer::for_development(self.issuer_key.as_deref(), self.secret.as_ref())
            .context("cannot mint a token")
    }

    /// Gets a token from the identity provider when wardctl is configured
    /// for the client-credentials flow and was given no token; call once
    /// before running a command.
    pub async fn fetch_token(&mut self) -> Result<()> {
        if self.token.is_none()
            && let Some(client) = &self.client
        {
            self.token = Some(client.fetch(self.timeout).await?);
        }
        Ok(())
    }

    /// The token admin commands run with: `--token` (or the one the
    /// client-credentials flow got), else, in development only, a
    /// short-lived vendor_admin token for all tenants minted by wardctl.
    pub fn admin_token(&self) -> Result<SecretString> {
        if let Some(t) = &self.token {
            return Ok(t.clone());
        }
        let claims = Claims::new(
            WARDCTL_SUBJECT,
            ALL_TENANTS,
            &[Role::VendorAdmin],
            SELF_TOKEN_TTL,
        );
        let token = self
            .dev_signer()?
            .sign(&claims)
            .context("cannot mint a token")?;
        Ok(SecretString::from(token))
    }

    /// A short-lived `analyst` token of `tenant` with `analyst` as subject,
    /// minted by wardctl (development: the demo acts as the assigned analyst).
    pub fn analyst_token(&self, analyst: &str, tenant: &str) -> Result<SecretString> {
        let claims = Claims::new(analyst, tenant, &[Role::Analyst], SELF_TOKEN_TTL);
        let token = self
            .dev_signer()?
            .sign(&claims)
            .context("cannot mint an analyst token")?;
        Ok(SecretString::from(token))
    }

    /// `--tenant`, required by commands that act on one tenant's data when
    /// wardctl mints an all-tenants token. With a ready `--token` (which may
    /// be bound to a tenant) it may be left out.
    pub fn tenant_for_tickets(&self) -> Result<Option<&str>> {
        self.tenant_for("the tenant whose tickets to use")
    }

    /// `--tenant` (see [`Context::tenant_for_tickets`]); `what` says what
    /// the tenant is for in the error.
    pub fn tenant_for(&self, what: &str) -> Result<Option<&str>> {
        match (&self.tenant, &self.token) {
            (Some(t), _) => Ok(Some(t)),
            (None, Some(_)) => Ok(None),
            (None, None) => bail!("this command needs --tenant (or WARDCTL_TENANT): {what}"),
        }
    }

    /// Connects to intake and returns a session acting on `tenant`.
    pub async fn session(&self, tenant: Option<&str>) -> Result<Session> {
        self.session_at(&self.intake_url, tenant).await
    }

    /// Connects to routing and returns a session acting on `tenant`.
    pub async fn routing_session(&self, tenant: Option<&str>) -> Result<Session> {
        self.session_at(&self.routing_url, tenant).await
    }

    /// Connects to billing and returns a session acting on `tenant`.
    pub async fn billing_session(&self, tenant: Option<&str>) -> Result<Session> {
        self.session_at(&self.billing_url, tenant).await
    }

    /// Connects to notification and returns a session acting on `tenant`.
    pub async fn notification_session(&self, tenant: Option<&str>) -> Result<Session> {
        self.session_at(&self.notification_url, tenant).await
    }

    async fn session_at(&self, url: &str, tenant: Option<&str>) -> Result<Session> {
        let token = self.admin_token()?;
        let channel = grpc::connect(url, self.timeout).await?;
        Session::new(channel, &token, tenant)
    }
}

/// Runs one command; its output goes to stdout.
pub async fn run(cli: Cli) -> Result<()> {
    let mut ctx = Context::from_cli(&cli);
    if !matches!(cli.command, Command::Token(_) | Command::DevIssuer(_)) {
        ctx.fetch_token().await?;
    }
    let name = command_name();
    let span = tracing::info_span!("wardctl", otel.name = %format!("wardctl {name}"), otel.kind = "client");
    async move {
        match cli.command {
            Command::Token(args) => token::run(&ctx, &args),
            Command::DevIssuer(cmd) => token::dev_issuer(&ctx, &cmd),
            Command::Tenant(cmd) => tenant::run(&ctx, cmd).await,
            Command::Ticket(cmd) => ticket::run(&ctx, cmd).await,
            Command::Analyst(cmd) => analyst::run(&ctx, cmd).await,
            Command::Queue(args) => routing::queue(&ctx, &args).await,
            Command::Assignments(args) => routing::assignments(&ctx, &args).await,
            Command::Explain { assignment } => routing::explain(&ctx, &assignment).await,
            Command::Rules => routing::rules(&ctx).await,
            Command::Sla(cmd) => routing::sla(&ctx, cmd).await,
            Command::Contract(cmd) => billing::contract(&ctx, cmd).await,
            Command::Usage(args) => billing::usage(&ctx, &args).await,
            Command::Charges(args) => billing::charges(&ctx, &args).await,
            Command::Unbilled(args) => billing::unbilled(&ctx, &args).await,
            Command::Invoice(cmd) => billing::invoice(&ctx, cmd).await,
            Command::Recipient(cmd) => notification::recipient(&ctx, cmd).await,
            Command::Webhook(cmd) => notification::webhook(&ctx, cmd).await,
            Command::Delivery(cmd) => notification::delivery(&ctx, cmd).await,
            Command::Audit(args) => audit::run(&ctx, &args).await,
            Command::Demo(args) => crate::demo::run(&ctx, &args).await.map(|_| ()),
        }
    }
    .instrument(span)
    .await
}

/// The subcommand path of this process's command line (`ticket create`),
/// for the span's name: clap knows it, so it is not spelled out here.
fn command_name() -> String {
    use clap::CommandFactory as _;
    let matches = Cli::command()
        .ignore_errors(true)
        .get_matches_from(std::env::args_os());
    let mut names = Vec::new();
    let mut m = &matches;
    while let Some((name, sub)) = m.subcommand() {
        names.push(name.to_owned());
        m = sub;
    }
    names.join(" ")
}

/// Up to `limit` items of a paged list call, following `next_page_token`:
/// `fetch(page_size, page_token)` asks for one page and returns its items and
/// the next token (empty on the last page). Every list command's loop.
pub async fn collect_pages<T, F, Fut>(limit: usize, mut fetch: F) -> Result<Vec<T>>
where
    F: FnMut(u32, String) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<T>, String), tonic::Status>>,
{
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let remaining = limit.saturating_sub(out.len());
        if remaining == 0 {
            return Ok(out);
        }
        let (items, next) = fetch(remaining.min(500) as u32, token.clone()).await?;
        let got = items.len();
        out.extend(items.into_iter().take(remaining));
        if next.is_empty() || next == token || got == 0 {
            return Ok(out);
        }
        token = next;
    }
}

/// Prints a list the way every list command does: a JSON array of the
/// messages with `--json`, else `empty` when there is nothing, else the
/// table with times in `tenant`'s zone.
pub async fn show_list<T: serde::Serialize>(
    ctx: &Context,
    tenant: Option<&str>,
    items: &[T],
    table: impl FnOnce(&[T], crate::render::Zone) -> crate::table::Table,
    empty: &str,
) {
    if ctx.json {
        print_json(items);
    } else if items.is_empty() {
        println!("{empty}");
    } else {
        let zone = routing::tenant_zone(ctx, tenant).await;
        print!("{}", table(items, zone).render());
    }
}

/// Prints one message: its JSON with `--json`, else its detail view with
/// times in `tenant`'s zone.
pub async fn show_one<T: serde::Serialize>(
    ctx: &Context,
    tenant: Option<&str>,
    item: &T,
    text: impl FnOnce(&T, crate::render::Zone) -> String,
) {
    if ctx.json {
        print_json(item);
    } else {
        let zone = routing::tenant_zone(ctx, tenant).await;
        print!("{}", text(item, zone));
    }
}

/// Prints a value as pretty JSON (a message in the proto3 JSON mapping).
pub fn print_json<T: serde::Serialize + ?Sized>(v: &T) {
    match serde_json::to_string_pretty(v) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("error: cannot write JSON: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use secrecy::ExposeSecret;
    use wardline_kit::auth::Authenticator;

    fn ctx(args: &[&str]) -> Context {
        let cli =
            Cli::try_parse_from(std::iter::once("wardctl").chain(args.iter().copied())).unwrap();
        Context::from_cli(&cli)
    }

    const SECRET: &str = "a-test-secret-that-is-long-enough-0123456789";

    /// False when the environment supplies what a test expects to be absent.
    fn env_is_clean() -> bool {
        [
            "WARDLINE_JWT_SECRET",
            "WARDLINE_TOKEN",
            "WARDCTL_TENANT",
            "WARDLINE_ENV",
            "WARDLINE_DEV_ISSUER_KEY",
            "WARDLINE_CLIENT_ID",
        ]
        .iter()
        .all(|v| std::env::var_os(v).is_none())
    }

    #[test]
    fn request_ids_are_fresh_uuids_unless_pinned() {
        let c = ctx(&["tenant", "list"]);
        let (a, b) = (c.request_id(), c.request_id());
        assert_ne!(a, b);
        assert_eq!(uuid::Uuid::parse_str(&a).unwrap().get_version_num(), 4);
        let c = ctx(&["--request-id", "fixed-1", "tenant", "list"]);
        assert_eq!(c.request_id(), "fixed-1");
    }

    #[tokio::test]
    async fn the_admin_token_is_a_vendor_token_minted_only_in_development() {
        if !env_is_clean() {
            eprintln!("skipped: a wardctl variable is set");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let issuer = wardline_kit::auth::signing::DevIssuer::at(dir.path());
        issuer.ensure().unwrap();
        let key = issuer.key_file().display().to_string();
        let e = ctx(&["--issuer-key", &key, "tenant", "list"])
            .admin_token()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("WARDLINE_ENV=development") && e.contains("WARDLINE_TOKEN"),
            "{e}"
        );
        let c = ctx(&[
            "--env",
            "development",
            "--issuer-key",
            &key,
            "tenant",
            "list",
        ]);
        let token = c.admin_token().unwrap();
        let mut cfg =
            wardline_kit::auth::AuthConfig::hs256(&SecretString::from(SECRET), "wardline-intake");
        cfg.keys = wardline_kit::auth::KeySource::JwksFile(issuer.jwks_file());
        let auth = Authenticator::new(cfg).await.unwrap();
        let caller = auth
            .verify(token.expose_secret(), Some("stmarys"))
            .await
            .unwrap();
        assert!(caller.all_tenants);
        assert_eq!(caller.subject, WARDCTL_SUBJECT);
        assert_eq!(caller.roles, vec![Role::VendorAdmin]);
        // HS256 with a secret, for services in development on that path.
        let c = ctx(&["--env", "development", "--secret", SECRET, "tenant", "list"]);
        let auth = Authenticator::hs256(&SecretString::from(SECRET), "wardline-billing").await;
        assert!(
            auth.verify(c.admin_token().unwrap().expose_secret(), None)
                .await
                .is_ok()
        );
    }

    #[test]
    fn a_ready_token_wins_and_makes_the_tenant_optional() {
        if !env_is_clean() {
            eprintln!("skipped: a wardctl variable is set");
            return;
        }
        let c = ctx(&["--token", "given", "ticket", "list"]);
        assert_eq!(c.admin_token().unwrap().expose_secret(), "given");
        assert_eq!(c.tenant_for_tickets().unwrap(), None);
        let c = ctx(&["--secret", SECRET, "ticket", "list"]);
        let e = c.tenant_for_tickets().unwrap_err().to_string();
        assert!(e.contains("--tenant"), "{e}");
        let c = ctx(&["--env", "development", "ticket", "list"]);
        let e = format!("{:#}", c.admin_token().unwrap_err());
        assert!(e.contains("WARDLINE_DEV_ISSUER_KEY"), "{e}");
    }
}
