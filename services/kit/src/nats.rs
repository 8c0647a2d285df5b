//! NATS connection, stream provisioning and the NATS permission layout.
//!
//! One stream, `WARDLINE_EVENTS`, holds every event on
//! `wardline.events.<tenant>.<aggregate>.<event>`. A second stream,
//! `WARDLINE_DEADLETTER`, keeps poison events with their reason on
//! `wardline.deadletter.<service>.<tenant>`. Both are created or brought up
//! to date by the one-shot `wardline-provision` (the only identity allowed
//! to administer streams, see [`permissions_conf`]); services only wait
//! until they exist ([`wait_for_streams`]).
//!
//! Every client connects as an nkey identity ([`NatsConfig`]); the server
//! binds each identity to a permission block generated here, so what a
//! service may publish and consume is reviewed in one place
//! (`deploy/nats/permissions.conf`, checked against [`permissions_conf`] by
//! a test) and the test kit runs nats-server with exactly that file.

use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream::{self, stream};

use crate::config::{ConfigError, Env};
use crate::tls::{Profile, url_host};

/// Name of the event stream.
pub const EVENTS_STREAM: &str = "WARDLINE_EVENTS";
/// Subjects of the event stream.
pub const EVENTS_SUBJECTS: &str = "wardline.events.>";
/// Name of the dead-letter stream.
pub const DEADLETTER_STREAM: &str = "WARDLINE_DEADLETTER";
/// Subjects of the dead-letter stream.
pub const DEADLETTER_SUBJECTS: &str = "wardline.deadletter.>";
/// Duplicate window of the event stream. It must exceed the relay's worst
/// retry of one row (rows are retried within seconds; a relay that crashed
/// after publishing and before marking is restarted within minutes), so a
/// re-published event is dropped by `Nats-Msg-Id`.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(2 * 60 * 60);

/// Errors talking to NATS.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// Could not connect.
    #[error("cannot connect to NATS: {0}")]
    Connect(#[from] async_nats::ConnectError),
    /// The nkey seed file cannot be read or is not a seed.
    #[error("NATS_NKEY_SEED_FILE: {0}")]
    Seed(String),
    /// Could not create or update a stream.
    #[error("cannot provision stream {stream}: {reason}")]
    Provision {
        /// Stream name.
        stream: &'static str,
        /// Server's answer.
        reason: String,
    },
}

/// How a process connects to NATS: `NATS_URL`, its identity
/// (`NATS_NKEY_SEED_FILE`), the CA of the servers' certificates
/// (`NATS_CA_FILE`) and, for mutual TLS, `NATS_CLIENT_CERT_FILE` and
/// `NATS_CLIENT_KEY_FILE`.
#[derive(Clone, Default)]
pub struct NatsConfig {
    /// `NATS_URL`: comma-separated servers, `tls://` or `nats://`.
    pub url: String,
    /// `NATS_NKEY_SEED_FILE`: the nkey seed this process signs in with.
    pub nkey_seed_file: Option<PathBuf>,
    /// `NATS_CA_FILE`: when set, TLS is required and the servers'
    /// certificates must chain to this CA.
    pub ca_file: Option<PathBuf>,
    /// `NATS_CLIENT_CERT_FILE` and `NATS_CLIENT_KEY_FILE`.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

impl std::fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a user and password: print the hosts only.
        let hosts: Vec<&str> = self.url.split(',').map(url_host).collect();
        f.debug_struct("NatsConfig")
            .field("hosts", &hosts)
            .field("nkey_seed_file", &self.nkey_seed_file)
            .field("ca_file", &self.ca_file)
            .field("client_cert", &self.client_cert)
            .finish()
    }
}

impl NatsConfig {
    /// Reads the NATS variables and applies the production rules: an
    /// identity is required, and TLS unless every server is local.
    pub fn from_env(env: &Env, profile: Profile) -> Result<Self, ConfigError> {
        let url = env.string("NATS_URL", "nats://127.0.0.1:4222");
        let cert = env.get("NATS_CLIENT_CERT_FILE");
        let key = env.get("NATS_CLIENT_KEY_FILE");
        let client_cert = match (cert, key) {
            (Some(c), Some(k)) => Some((c.into(), k.into())),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::Missing {
                    var: "NATS_CLIENT_KEY_FILE".into(),
                });
            }
            (None, Some(_)) => {
                return Err(ConfigError::Missing {
                    var: "NATS_CLIENT_CERT_FILE".into(),
                });
            }
        };
        let cfg = Self {
            nkey_seed_file: env.get("NATS_NKEY_SEED_FILE").map(PathBuf::from),
            ca_file: env.get("NATS_CA_FILE").map(PathBuf::from),
            client_cert,
            url,
        };
        let userinfo = cfg.url.split(',').any(|u| {
            u.split_once("://")
                .map_or(u, |(_, r)| r)
                .split('/')
                .next()
                .is_some_and(|a| a.contains('@'))
        });
        if cfg.nkey_seed_file.is_none() && !userinfo {
            if profile.is_production() {
                return Err(ConfigError::Invalid {
                    var: "NATS_NKEY_SEED_FILE".into(),
                    reason: "required in production: NATS refuses anonymous clients (set it to this service's nkey seed, or WARDLINE_ENV=development)".into(),
                });
            }
            tracing::warn!("NATS without credentials (WARDLINE_ENV=development)");
        }
        for server in cfg.url.split(',') {
            let tls = cfg.ca_file.is_some() || server.trim().starts_with("tls://");
            crate::tls::require_tls(profile, "NATS_URL", tls, url_host(server.trim()), "NATS")?;
        }
        Ok(cfg)
    }

    /// A local, anonymous, plaintext configuration (tools and tests).
    pub fn plain(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }

    /// Connection options with this identity and TLS; `name` names the
    /// client in the server's monitoring and its inbox prefix
    /// (`_INBOX.<name>`), the only inboxes its permissions let it read.
    pub fn options(&self, name: &str) -> Result<async_nats::ConnectOptions, NatsError> {
        let mut opts = async_nats::ConnectOptions::new()
            .name(format!("wardline-{name}"))
            .custom_inbox_prefix(format!("_INBOX.{name}"));
        if let Some(path) = &self.nkey_seed_file {
            let seed = std::fs::read_to_string(path)
                .map_err(|e| NatsError::Seed(format!("cannot read {}: {e}", path.display())))?;
            let seed = seed.trim().to_owned();
            if !seed.starts_with('S') || nkeys::KeyPair::from_seed(&seed).is_err() {
                return Err(NatsError::Seed(format!(
                    "{} holds no nkey seed",
                    path.display()
                )));
            }
            opts = opts.nkey(seed);
        }
        if let Some(ca) = &self.ca_file {
            opts = opts.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let Some((cert, key)) = &self.client_cert {
            opts = opts.add_client_certificate(cert.clone(), key.clone());
        }
        Ok(opts)
    }
}

/// Connects to NATS as `service`. The client reconnects by itself for ever
/// afterwards; the first connection is retried too, so start order does
/// not matter.
pub async fn connect(cfg: &NatsConfig, service: &str) -> Result<async_nats::Client, NatsError> {
    let client = cfg
        .options(service)?
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(5))
        .max_reconnects(None)
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Disconnected => tracing::warn!("NATS disconnected"),
                async_nats::Event::Connected => tracing::info!("NATS connected"),
                other => tracing::warn!(event = %other, "NATS event"),
            }
        })
        .connect(cfg.url.as_str())
        .await?;
    Ok(client)
}

/// Waits until both streams exist: `wardline-provision` creates them, a
/// service may not (its identity has no stream administration). Logs once
/// per stream while waiting, so an operator sees what is missing.
pub async fn wait_for_streams(
    js: &jetstream::Context,
    shutdown: &tokio_util::sync::CancellationToken,
) {
    for name in [EVENTS_STREAM, DEADLETTER_STREAM] {
        let mut logged = false;
        loop {
            match js.get_stream(name).await {
                Ok(_) => break,
                Err(e) => {
                    if !logged {
                        tracing::warn!(stream = name, error = %e, "waiting for the stream; run wardline-provision (the provisioning identity creates it)");
                        logged = true;
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                    }
                }
            }
        }
        if logged {
            tracing::info!(stream = name, "stream exists; going on");
        }
    }
}

/// The event stream's configuration for `replicas` replicas.
pub fn events_stream_config(replicas: usize) -> stream::Config {
    stream::Config {
        name: EVENTS_STREAM.into(),
        subjects: vec![EVENTS_SUBJECTS.into()],
        storage: stream::StorageType::File,
        num_replicas: replicas,
        duplicate_window: DUPLICATE_WINDOW,
        max_age: Duration::from_secs(400 * 24 * 60 * 60),
        ..Default::default()
    }
}

/// The dead-letter stream's configuration.
pub fn deadletter_stream_config(replicas: usize) -> stream::Config {
    stream::Config {
        name: DEADLETTER_STREAM.into(),
        subjects: vec![DEADLETTER_SUBJECTS.into()],
        storage: stream::StorageType::File,
        num_replicas: replicas,
        duplicate_window: DUPLICATE_WINDOW,
        ..Default::default()
    }
}

/// Creates both streams, or updates them when their configuration drifted.
/// Needs the provisioning identity; safe to run concurrently and again;
/// retried until NATS answers.
pub async fn provision_streams(js: &jetstream::Context, replicas: usize) -> Result<(), NatsError> {
    for cfg in [
        events_stream_config(replicas),
        deadletter_stream_config(replicas),
    ] {
        let name: &'static str = if cfg.name == EVENTS_STREAM {
            EVENTS_STREAM
        } else {
            DEADLETTER_STREAM
        };
        let mut delay = Duration::from_millis(200);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let result = async {
                let mut s = js
                    .get_or_create_stream(cfg.clone())
                    .await
                    .map_err(|e| e.to_string())?;
                let current = s.info().await.map_err(|e| e.to_string())?.config.clone();
                if current.subjects != cfg.subjects
                    || current.duplicate_window != cfg.duplicate_window
                {
                    js.update_stream(cfg.clone())
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Ok::<_, String>(())
            }
            .await;
            match result {
                Ok(()) => break,
                Err(reason) if attempts >= 30 => {
                    return Err(NatsError::Provision {
                        stream: name,
                        reason,
                    });
                }
                Err(reason) => {
                    tracing::warn!(stream = name, %reason, "stream not provisioned yet; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
    Ok(())
}

/// NATS identities of the services, with the event kinds (`<aggregate>.<event>`,
/// `>` for all events of an aggregate) each may publish: the aggregates it
/// owns (`docs/threat-model.md`; ARCHITECTURE.md's ownership table). A
/// service publishing anything else is refused by the server.
pub const SERVICE_PUBLISHES: &[(&str, &[&str])] = &[
    (
        "intake",
        &[
            "tenant.>",
            "ticket.created",
            "ticket.acknowledged",
            "ticket.started",
            "ticket.held",
            "ticket.resolved",
            "ticket.closed",
            "ticket.reopened",
            "ticket.transferred",
            "ticket.note_added",
        ],
    ),
    (
        "routing",
        &[
            "ticket.assigned",
            "ticket.queued",
            "ticket.escalated",
            "ticket.sla_breached",
            "analyst.>",
        ],
    ),
    ("billing", &["invoice.>", "call.>"]),
    ("notification", &["delivery.>"]),
];

/// The identity that creates and updates the streams (`wardline-provision`),
/// and operates them (wardctl's event watch, wardline-load's limits probe).
pub const PROVISION_IDENTITY: &str = "provision";

/// The service that owns events of `kind` (`"ticket.created"`), per
/// [`SERVICE_PUBLISHES`].
pub fn owner_of(kind: &str) -> Option<&'static str> {
    SERVICE_PUBLISHES.iter().find_map(|(service, kinds)| {
        kinds
            .iter()
            .any(|k| match k.strip_suffix(".>") {
                Some(aggregate) => kind.split('.').next() == Some(aggregate),
                None => *k == kind,
            })
            .then_some(*service)
    })
}

/// Subjects an identity may publish to and subscribe to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    /// Publish allow-list.
    pub publish: Vec<String>,
    /// Subscribe allow-list.
    pub subscribe: Vec<String>,
}

/// A service's permissions with the durable consumers it runs (its shared
/// durable `<service>`, plus `<service>-<tenants>` for dedicated replicas):
/// its own events and dead letters, PubAck replies to its own inboxes, and
/// on the event stream only what its consumer loop calls on those durables
/// (create/update, info, next, ack, the max-deliveries advisory, reading a
/// message back by sequence). No stream administration.
pub fn service_permissions(service: &str, durables: &[String]) -> Option<Permissions> {
    let (_, kinds) = SERVICE_PUBLISHES.iter().find(|(s, _)| *s == service)?;
    let mut publish: Vec<String> = kinds
        .iter()
        .map(|k| format!("wardline.events.*.{k}"))
        .collect();
    publish.push(format!("wardline.deadletter.{service}.>"));
    publish.push(format!("$JS.API.STREAM.INFO.{EVENTS_STREAM}"));
    publish.push(format!("$JS.API.STREAM.INFO.{DEADLETTER_STREAM}"));
    publish.push(format!("$JS.API.STREAM.MSG.GET.{EVENTS_STREAM}"));
    let mut subscribe = vec![format!("_INBOX.{service}.>")];
    for d in durables {
        publish.push(format!("$JS.API.CONSUMER.CREATE.{EVENTS_STREAM}.{d}"));
        publish.push(format!("$JS.API.CONSUMER.CREATE.{EVENTS_STREAM}.{d}.>"));
        publish.push(format!(
            "$JS.API.CONSUMER.DURABLE.CREATE.{EVENTS_STREAM}.{d}"
        ));
        publish.push(format!("$JS.API.CONSUMER.INFO.{EVENTS_STREAM}.{d}"));
        publish.push(format!("$JS.API.CONSUMER.MSG.NEXT.{EVENTS_STREAM}.{d}"));
        publish.push(format!("$JS.ACK.{EVENTS_STREAM}.{d}.>"));
        subscribe.push(format!(
            "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{EVENTS_STREAM}.{d}"
        ));
    }
    Some(Permissions { publish, subscribe })
}

/// The provisioning identity's permissions: the JetStream API (it creates
/// and updates streams, and is the operator's identity for wardctl) and its
/// replies. It may not publish events.
pub fn provision_permissions() -> Permissions {
    Permissions {
        // wardline-load's limits probe measures JetStream on a scratch stream.
        publish: vec!["$JS.API.>".into(), "wardline_load.probe.>".into()],
        subscribe: vec!["_INBOX.>".into(), "wardline.events.>".into()],
    }
}

/// Name of an identity's permission block: `WARDLINE_<IDENTITY>`, with
/// `-` as `_` (`WARDLINE_ROUTING_STMARYS` for a dedicated replica).
pub fn permission_block(identity: &str) -> String {
    format!("WARDLINE_{}", identity.to_uppercase().replace('-', "_"))
}

/// The environment variable nats-server reads an identity's public nkey
/// from: `WARDLINE_NKEY_<IDENTITY>` (`wardline-dev-pki` writes them to
/// `nats/identities.env`; Kubernetes takes them from a ConfigMap).
pub fn nkey_variable(identity: &str) -> String {
    format!(
        "WARDLINE_NKEY_{}",
        identity.to_uppercase().replace('-', "_")
    )
}

fn render_block(name: &str, p: &Permissions) -> String {
    let list = |v: &[String]| {
        v.iter()
            .map(|s| format!("      \"{s}\"\n"))
            .collect::<String>()
    };
    format!(
        "{} = {{\n  publish: {{\n    allow: [\n{}    ]\n  }}\n  subscribe: {{\n    allow: [\n{}    ]\n  }}\n}}\n",
        permission_block(name),
        list(&p.publish),
        list(&p.subscribe)
    )
}

/// The NATS permission layout, in nats-server configuration syntax: one
/// variable per identity (`WARDLINE_INTAKE` ... `WARDLINE_PROVISION`), which
/// the server's `authorization` users refer to. `dedicated` adds a block per
/// dedicated replica pool, `(service, tenants)` with the durable
/// `<service>-<tenants joined by ->` (`WARDLINE_TENANTS`).
/// `deploy/nats/permissions.conf` is this with no dedicated pools.
pub fn permissions_conf(dedicated: &[(&str, &[&str])]) -> String {
    let mut out = String::from(
        "# Wardline's NATS identities and permissions: one block per identity and\n\
         # one nkey user per identity, whose public key nats-server reads from its\n\
         # environment (WARDLINE_NKEY_<IDENTITY>; wardline-dev-pki writes them to\n\
         # nats/identities.env). No other client can sign in. Include this file\n\
         # from the server configuration. Generated by `wardline-provision\n\
         # permissions` from services/kit/src/nats.rs (a test keeps the shipped\n\
         # deploy/nats/permissions.conf equal to it); do not edit.\n\n",
    );
    let mut identities: Vec<String> = Vec::new();
    for (service, _) in SERVICE_PUBLISHES {
        let p = service_permissions(service, &[(*service).to_owned()])
            .expect("a listed service has permissions");
        out.push_str(&render_block(service, &p));
        out.push('\n');
        identities.push((*service).to_owned());
    }
    for (service, tenants) in dedicated {
        let durable = format!("{service}-{}", tenants.join("-"));
        if let Some(p) = service_permissions(service, std::slice::from_ref(&durable)) {
            out.push_str(&render_block(&durable, &p));
            out.push('\n');
            identities.push(durable);
        }
    }
    out.push_str(&render_block(PROVISION_IDENTITY, &provision_permissions()));
    identities.push(PROVISION_IDENTITY.to_owned());
    out.push_str("\nauthorization {\n  users = [\n");
    for id in &identities {
        out.push_str(&format!(
            "    {{ nkey: ${}, permissions: ${} }}\n",
            nkey_variable(id),
            permission_block(id)
        ));
    }
    out.push_str("  ]\n}\n");
    out
}

/// Subject of an event: `wardline.events.<tenant>.<aggregate>.<event>`.
pub fn event_subject(tenant: &str, aggregate: &str, event: &str) -> String {
    format!("wardline.events.{tenant}.{aggregate}.{event}")
}

/// Subject of a dead letter: `wardline.deadletter.<service>.<tenant>`.
pub fn deadletter_subject(service: &str, tenant: &str) -> String {
    let tenant = if tenant.is_empty() {
        "_unknown"
    } else {
        tenant
    };
    format!("wardline.deadletter.{service}.{tenant}")
}

/// The tenant token of an event subject, if it is one.
pub fn tenant_of_subject(subject: &str) -> Option<&str> {
    let mut parts = subject.split('.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("wardline"), Some("events"), Some(t)) => Some(t),
        _ => None,
    }
}

/// Consumer filter subjects for `kinds` (e.g. `"ticket.assigned"`) limited
/// to `tenants` (all tenants when empty).
pub fn filter_subjects(tenants: &[String], kinds: &[&str]) -> Vec<String> {
    let tenant_tokens: Vec<&str> = if tenants.is_empty() {
        vec!["*"]
    } else {
        tenants.iter().map(String::as_str).collect()
    };
    tenant_tokens
        .iter()
        .flat_map(|t| {
            kinds
                .iter()
                .map(move |k| format!("wardline.events.{t}.{k}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects() {
        assert_eq!(
            event_subject("stmarys", "ticket", "created"),
            "wardline.events.stmarys.ticket.created"
        );
        assert_eq!(
            tenant_of_subject("wardline.events.stmarys.ticket.created"),
            Some("stmarys")
        );
        assert_eq!(tenant_of_subject("other.x"), None);
        assert_eq!(
            filter_subjects(&[], &["ticket.assigned"]),
            vec!["wardline.events.*.ticket.assigned"]
        );
        assert_eq!(
            filter_subjects(&["a".into(), "b".into()], &["x.y"]),
            vec!["wardline.events.a.x.y", "wardline.events.b.x.y"]
        );
        assert_eq!(
            deadletter_subject("intake", ""),
            "wardline.deadletter.intake._unknown"
        );
    }

    #[test]
    fn every_event_kind_has_one_owner() {
        use wardline_proto::events::event_envelope::Payload as P;
        let all = [
            P::TenantCreated(Default::default()),
            P::TenantUpdated(Default::default()),
            P::TicketCreated(Default::default()),
            P::TicketAcknowledged(Default::default()),
            P::TicketStarted(Default::default()),
            P::TicketHeld(Default::default()),
            P::TicketResolved(Default::default()),
            P::TicketClosed(Default::default()),
            P::TicketReopened(Default::default()),
            P::TicketTransferred(Default::default()),
            P::TicketNoteAdded(Default::default()),
            P::TicketAssigned(Default::default()),
            P::TicketQueued(Default::default()),
            P::TicketEscalated(Default::default()),
            P::SlaBreached(Default::default()),
            P::AnalystUpserted(Default::default()),
            P::AnalystAvailabilityChanged(Default::default()),
            P::InvoiceIssued(Default::default()),
            P::CallMetered(Default::default()),
            P::DeliveryOutcome(Default::default()),
        ];
        for p in &all {
            let (aggregate, event) = crate::events::kind(p);
            let kind = format!("{aggregate}.{event}");
            let owners: Vec<_> = SERVICE_PUBLISHES
                .iter()
                .filter(|(s, _)| owner_of(&kind) == Some(*s))
                .collect();
            assert_eq!(owners.len(), 1, "{kind}");
        }
        assert_eq!(owner_of("ticket.created"), Some("intake"));
        assert_eq!(owner_of("ticket.sla_breached"), Some("routing"));
        assert_eq!(owner_of("call.metered"), Some("billing"));
    }

    #[test]
    fn services_administer_no_stream_and_read_only_their_durables() {
        let p = service_permissions("routing", &["routing".into()]).unwrap();
        assert!(!p.publish.iter().any(|s| s.contains("STREAM.CREATE")
            || s.contains("STREAM.DELETE")
            || s.contains("STREAM.UPDATE")
            || s.contains("STREAM.PURGE")
            || s.contains("$JS.API.>")));
        assert!(
            !p.publish
                .contains(&"wardline.events.*.ticket.created".to_owned())
        );
        assert!(
            p.publish
                .iter()
                .filter(|s| s.contains("CONSUMER"))
                .all(|s| s.contains(".routing"))
        );
        assert!(
            permissions_conf(&[("routing", &["stmarys"])]).contains("WARDLINE_ROUTING_STMARYS = {")
        );
    }

    /// wardline-dev-pki makes exactly the identities the layout names, under
    /// the variables it reads.
    #[test]
    fn the_dev_pki_makes_the_identities_of_the_layout() {
        let mut ids: Vec<&str> = SERVICE_PUBLISHES.iter().map(|(s, _)| *s).collect();
        ids.push(PROVISION_IDENTITY);
        assert_eq!(ids, wardline_devpki::NATS_IDENTITIES);
        for id in ids {
            assert_eq!(nkey_variable(id), wardline_devpki::nkey_variable(id));
            assert!(permissions_conf(&[]).contains(&format!("nkey: ${},", nkey_variable(id))));
        }
    }

    /// `deploy/nats/permissions.conf` is what ships; it must be what the
    /// code says (regenerate with `cargo run -p wardline-kit --bin
    /// wardline-provision -- permissions > deploy/nats/permissions.conf`).
    #[test]
    fn the_shipped_permission_file_is_the_generated_one() {
        let shipped = include_str!("../../../deploy/nats/permissions.conf");
        assert_eq!(shipped, permissions_conf(&[]));
    }
}
