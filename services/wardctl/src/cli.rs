//! The command line: global flags and subcommands.
//!
//! What must hold: every value a user types for an enum is the protobuf
//! enum's own label, spelled exactly as wardctl prints it back
//! (`medication-administration`, `in-progress`, `p1`; see
//! [`proto_enum`]), so output can be pasted into the next command. No
//! enum is mirrored here: a value added to a `.proto` is accepted at once.

use std::ffi::OsStr;
use std::marker::PhantomData;
use std::time::Duration;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::SecretString;
use wardline_kit::auth::Role;
use wardline_proto::ProtoEnum;
use wardline_proto::common::{
    CallerRole, Category, Channel, Impact, Priority, TicketStatus, Urgency,
};
use wardline_proto::events::{HoldReason, ResolutionCode, TransferReason};

/// Default address of intake's gRPC port.
pub const DEFAULT_INTAKE_URL: &str = "http://127.0.0.1:50051";
/// Default address of routing's gRPC port.
pub const DEFAULT_ROUTING_URL: &str = "http://127.0.0.1:50052";
/// Default address of billing's gRPC port.
pub const DEFAULT_BILLING_URL: &str = "http://127.0.0.1:50053";
/// Default address of notification's gRPC port.
pub const DEFAULT_NOTIFICATION_URL: &str = "http://127.0.0.1:50054";
/// Default NATS server.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

/// wardctl: admin and demo client for Wardline.
#[derive(Debug, Parser)]
#[command(
    name = "wardctl",
    version,
    about,
    long_about = None,
    propagate_version = true,
    next_help_heading = "Global options"
)]
pub struct Cli {
    /// Intake's gRPC endpoint (plain HTTP/2).
    #[arg(long, env = "WARDCTL_INTAKE_URL", default_value = DEFAULT_INTAKE_URL, global = true)]
    pub intake_url: String,

    /// Routing's gRPC endpoint (plain HTTP/2).
    #[arg(long, env = "WARDCTL_ROUTING_URL", default_value = DEFAULT_ROUTING_URL, global = true)]
    pub routing_url: String,

    /// Billing's gRPC endpoint (plain HTTP/2).
    #[arg(long, env = "WARDCTL_BILLING_URL", default_value = DEFAULT_BILLING_URL, global = true)]
    pub billing_url: String,

    /// Notification's gRPC endpoint (plain HTTP/2).
    #[arg(long, env = "WARDCTL_NOTIFICATION_URL", default_value = DEFAULT_NOTIFICATION_URL, global = true)]
    pub notification_url: String,

    /// A bearer token from your identity provider (wins over everything below).
    #[arg(
        long,
        env = "WARDLINE_TOKEN",
        hide_env_values = true,
        value_parser = parse_secret,
        global = true
    )]
    pub token: Option<SecretString>,

    /// OAuth 2.0 client id: get a token with the client-credentials flow
    /// from --token-url (the client secret is read from WARDLINE_CLIENT_SECRET,
    /// never from the command line).
    #[arg(long, env = "WARDLINE_CLIENT_ID", global = true)]
    pub client_id: Option<String>,

    /// The identity provider's token endpoint (client-credentials flow).
    #[arg(long, env = "WARDLINE_TOKEN_URL", global = true)]
    pub token_url: Option<String>,

    /// `scope` of the client-credentials request (Entra ID:
    /// `api://<app>/.default`).
    #[arg(long, env = "WARDLINE_TOKEN_SCOPE", global = true)]
    pub scope: Option<String>,

    /// `audience` of the client-credentials request (providers that take one).
    #[arg(long, env = "WARDLINE_TOKEN_AUDIENCE", global = true)]
    pub audience: Option<String>,

    /// `production` (default) or `development`: wardctl mints its own
    /// tokens (--issuer-key or --secret) only in development.
    #[arg(long = "env", env = "WARDLINE_ENV", default_value = "production",
          value_parser = ["production", "development"], global = true)]
    pub profile: String,

    /// The development issuer's private key (`es256.key` of `wardctl
    /// dev-issuer init`), to mint tokens in development.
    #[arg(long, env = "WARDLINE_DEV_ISSUER_KEY", global = true)]
    pub issuer_key: Option<std::path::PathBuf>,

    /// An HS256 secret to mint tokens with, in development (services with
    /// WARDLINE_JWT_SECRET and WARDLINE_ENV=development).
    #[arg(
        long,
        env = "WARDLINE_JWT_SECRET",
        hide_env_values = true,
        value_parser = parse_secret,
        global = true
    )]
    pub secret: Option<SecretString>,

    /// Tenant to act on (sent as x-tenant-id); also the tenant of `wardctl token`.
    #[arg(long, env = "WARDCTL_TENANT", global = true)]
    pub tenant: Option<String>,

    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,

    /// Show times in UTC even when the tenant's time zone is known.
    #[arg(long, global = true)]
    pub utc: bool,

    /// NATS server (the demo shows the events of its tickets from there).
    #[arg(long, env = "NATS_URL", default_value = DEFAULT_NATS_URL, global = true)]
    pub nats_url: String,

    /// Idempotency key of the mutating call (a fresh UUIDv4 when absent).
    #[arg(long, global = true, value_parser = parse_request_id)]
    pub request_id: Option<String>,

    /// Seconds to wait for a connection and for each call.
    #[arg(long, env = "WARDCTL_TIMEOUT", default_value_t = 10, global = true,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    pub timeout: u64,

    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The per-call timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout)
    }
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Mint a development bearer token for --tenant, signed by the
    /// development issuer (--issuer-key) or --secret; refused unless
    /// WARDLINE_ENV=development.
    Token(TokenArgs),
    /// The development token issuer (an ES256 key and its JWKS).
    #[command(subcommand)]
    DevIssuer(DevIssuerCommand),
    /// Tenants and their facilities (uses a vendor_admin token).
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Tickets of --tenant: create, inspect, work them.
    #[command(subcommand)]
    Ticket(TicketCommand),
    /// Routing's analyst directory: who takes which tickets, when, how many.
    #[command(subcommand)]
    Analyst(AnalystCommand),
    /// --tenant's routing queue: tickets nobody could take yet, P1 first, oldest first.
    Queue(QueueArgs),
    /// --tenant's assignments, newest first.
    Assignments(AssignmentsArgs),
    /// Why routing chose an analyst: every candidate with its verdict and rank.
    Explain {
        /// Assignment id (from `wardctl assignments`), or a ticket id or
        /// number to explain its latest assignment.
        assignment: String,
    },
    /// --tenant's routing rules: skills and credentials each category needs.
    Rules,
    /// --tenant's SLA targets and acknowledgement timeout.
    #[command(subcommand)]
    Sla(SlaCommand),
    /// --tenant's contract in billing: versioned rate plans.
    #[command(subcommand)]
    Contract(ContractCommand),
    /// --tenant's calls of a month: allowance, overage, after hours, breaches.
    Usage(UsageArgs),
    /// --tenant's priced charges of a month, each with its rule and rate.
    Charges(ChargesArgs),
    /// Calls billing could not rate for lack of a contract (every tenant's
    /// unless --tenant).
    Unbilled(UnbilledArgs),
    /// --tenant's monthly invoices: drafts, issuing, export, rebuild check.
    #[command(subcommand)]
    Invoice(InvoiceCommand),
    /// --tenant's notification recipients: addresses, subscriptions, quiet hours.
    #[command(subcommand)]
    Recipient(RecipientCommand),
    /// --tenant's webhook endpoints: create, rotate the secret, list, delete.
    #[command(subcommand)]
    Webhook(WebhookCommand),
    /// --tenant's deliveries: who was told what on which channel, attempts, retries.
    #[command(subcommand)]
    Delivery(DeliveryCommand),
    /// Who read or changed what in --tenant (the audit trail): every read
    /// of a ticket's text and every change, newest first.
    Audit(AuditArgs),
    /// Play a scenario (default: the shipped demo): hospitals, a roster,
    /// contracts, recipients and calls; show where each call went, what
    /// billing metered, who was told, and what to try next.
    Demo(DemoArgs),
}

/// The service a command mainly talks to, for hints about the setup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Service {
    /// Intake.
    Intake,
    /// Routing.
    Routing,
    /// Billing.
    Billing,
    /// Notification.
    Notification,
}

impl Service {
    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Service::Intake => "intake",
            Service::Routing => "routing",
            Service::Billing => "billing",
            Service::Notification => "notification",
        }
    }

    /// The variable and flag that point wardctl at it.
    pub fn setting(self) -> &'static str {
        match self {
            Service::Intake => "WARDCTL_INTAKE_URL or --intake-url",
            Service::Routing => "WARDCTL_ROUTING_URL or --routing-url",
            Service::Billing => "WARDCTL_BILLING_URL or --billing-url",
            Service::Notification => "WARDCTL_NOTIFICATION_URL or --notification-url",
        }
    }
}

impl Cli {
    /// Where wardctl looks for `service`.
    pub fn url(&self, service: Service) -> &str {
        match service {
            Service::Intake => &self.intake_url,
            Service::Routing => &self.routing_url,
            Service::Billing => &self.billing_url,
            Service::Notification => &self.notification_url,
        }
    }

    /// The service the command talks to, and where wardctl looks for it.
    pub fn service(&self) -> (Service, &str) {
        match self.command {
            Command::Analyst(_)
            | Command::Queue(_)
            | Command::Assignments(_)
            | Command::Explain { .. }
            | Command::Rules
            | Command::Sla(_) => (Service::Routing, &self.routing_url),
            Command::Contract(_)
            | Command::Usage(_)
            | Command::Charges(_)
            | Command::Unbilled(_)
            | Command::Invoice(_) => (Service::Billing, &self.billing_url),
            Command::Recipient(_) | Command::Webhook(_) | Command::Delivery(_) => {
                (Service::Notification, &self.notification_url)
            }
            Command::Audit(ref a) => (a.service, self.url(a.service)),
            Command::Token(_)
            | Command::DevIssuer(_)
            | Command::Tenant(_)
            | Command::Ticket(_)
            | Command::Demo(_) => (Service::Intake, &self.intake_url),
        }
    }
}

/// `wardctl dev-issuer ...`.
#[derive(Debug, Subcommand)]
pub enum DevIssuerCommand {
    /// Make the development issuer's key (`<dir>/es256.key`, kept when it
    /// exists) and its JWKS (`<dir>/jwks.json`): point the services'
    /// WARDLINE_JWKS_FILE at the JWKS and wardctl's WARDLINE_DEV_ISSUER_KEY
    /// at the key.
    Init {
        /// Directory of the two files.
        #[arg(long)]
        dir: std::path::PathBuf,
    },
}

/// `wardctl token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Subject (user or system id).
    #[arg(long)]
    pub subject: String,
    /// Role to grant (repeatable).
    #[arg(long = "role", value_enum, required = true)]
    pub roles: Vec<RoleArg>,
    /// Lifetime in minutes (the services refuse tokens that live longer
    /// than their WARDLINE_JWT_MAX_LIFETIME_SECS, 90 minutes by default).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=24 * 60))]
    pub ttl_minutes: u64,
}

/// `wardctl tenant ...`.
#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant.
    Create {
        /// Tenant slug, e.g. stmarys.
        #[arg(long)]
        id: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// IANA time zone, e.g. America/Chicago.
        #[arg(long)]
        time_zone: String,
        /// Ticket number prefix, 2-6 uppercase letters.
        #[arg(long)]
        prefix: String,
        /// A facility as id=name (repeatable).
        #[arg(long = "facility", value_parser = parse_facility)]
        facilities: Vec<FacilityArg>,
        /// Hours after resolution during which a ticket may be reopened (0: intake's default).
        #[arg(long, default_value_t = 0)]
        reopen_window_hours: u32,
    },
    /// Show a tenant (default: --tenant).
    Get {
        /// Tenant slug.
        id: Option<String>,
    },
    /// List every tenant.
    List,
    /// Add a facility to --tenant.
    AddFacility {
        /// Facility slug, e.g. main-campus.
        #[arg(long)]
        id: String,
        /// Display name.
        #[arg(long)]
        name: String,
    },
}

/// A facility given as `id=name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FacilityArg {
    /// Facility slug.
    pub id: String,
    /// Display name.
    pub name: String,
}

/// `wardctl ticket ...`.
#[derive(Debug, Subcommand)]
pub enum TicketCommand {
    /// File a ticket.
    Create(Box<CreateTicketArgs>),
    /// Show a ticket by id or number (e.g. STM-000042).
    Get {
        /// Ticket id or number.
        ticket: String,
    },
    /// List tickets, newest first.
    List(ListTicketsArgs),
    /// Acknowledge an assigned ticket.
    #[command(alias = "acknowledge")]
    Ack(TicketRef),
    /// Start (or resume) work.
    Start(TicketRef),
    /// Put a ticket on hold.
    Hold {
        #[command(flatten)]
        target: TicketRef,
        /// Why.
        #[arg(long, value_parser = proto_enum::<HoldReason>())]
        reason: HoldReason,
    },
    /// Resolve a ticket.
    Resolve {
        #[command(flatten)]
        target: TicketRef,
        /// How it was resolved.
        #[arg(long, value_parser = proto_enum::<ResolutionCode>())]
        code: ResolutionCode,
        /// Resolved during the first contact.
        #[arg(long)]
        fcr: bool,
    },
    /// Close a resolved ticket.
    Close(TicketRef),
    /// Reopen a resolved ticket.
    Reopen(TicketRef),
    /// Hand a ticket back to routing.
    Transfer {
        #[command(flatten)]
        target: TicketRef,
        /// Why.
        #[arg(long, value_parser = proto_enum::<TransferReason>())]
        reason: TransferReason,
        /// Corrected category.
        #[arg(long, value_parser = proto_enum::<Category>())]
        category: Option<Category>,
    },
    /// Add a note to a ticket.
    Note {
        /// Ticket id or number.
        ticket: String,
        /// Text of the note.
        #[arg(long)]
        body: String,
        /// Visible to the caller.
        #[arg(long)]
        public: bool,
    },
    /// List the notes of a ticket, oldest first.
    Notes {
        /// Ticket id or number.
        ticket: String,
    },
}

/// The ticket a lifecycle command acts on.
#[derive(Debug, Args)]
pub struct TicketRef {
    /// Ticket id or number (e.g. STM-000042).
    pub ticket: String,
    /// Apply only if the ticket is still at this version (else ABORTED).
    #[arg(long)]
    pub expected_version: Option<u64>,
}

/// `wardctl ticket create`.
#[derive(Debug, Args)]
pub struct CreateTicketArgs {
    /// Facility slug of the tenant.
    #[arg(long)]
    pub facility: String,
    /// Caller's id in the tenant's directory.
    #[arg(long)]
    pub caller_id: String,
    /// Caller's display name.
    #[arg(long)]
    pub caller_name: String,
    /// Caller's role.
    #[arg(long, value_parser = proto_enum::<CallerRole>())]
    pub caller_role: CallerRole,
    /// Caller's email for updates.
    #[arg(long)]
    pub caller_email: Option<String>,
    /// Caller's call-back phone in E.164, e.g. +13125550100.
    #[arg(long)]
    pub caller_phone: Option<String>,
    /// How the ticket arrived.
    #[arg(long, value_parser = proto_enum::<Channel>())]
    pub channel: Channel,
    /// Application code (intake assumes ehr when absent).
    #[arg(long)]
    pub application: Option<String>,
    /// Category (intake classifies the description when absent).
    #[arg(long, value_parser = proto_enum::<Category>())]
    pub category: Option<Category>,
    /// How soon the caller needs it fixed.
    #[arg(long, value_parser = proto_enum::<Urgency>())]
    pub urgency: Urgency,
    /// How many people it touches.
    #[arg(long, value_parser = proto_enum::<Impact>())]
    pub impact: Impact,
    /// Patient care is blocked right now (forces P1).
    #[arg(long)]
    pub patient_care_blocked: bool,
    /// What is wrong (free text; stays inside intake).
    #[arg(long)]
    pub description: String,
}

/// `wardctl ticket list`.
#[derive(Debug, Args)]
pub struct ListTicketsArgs {
    /// Only these statuses (repeatable or comma-separated).
    #[arg(long = "status", value_parser = proto_enum::<TicketStatus>(), value_delimiter = ',')]
    pub statuses: Vec<TicketStatus>,
    /// Only these priorities (repeatable or comma-separated).
    #[arg(long = "priority", value_parser = proto_enum::<Priority>(), value_delimiter = ',')]
    pub priorities: Vec<Priority>,
    /// Only tickets assigned to this analyst.
    #[arg(long)]
    pub assignee: Option<String>,
    /// Only this facility.
    #[arg(long)]
    pub facility: Option<String>,
    /// At most this many tickets (pages are followed until reached).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub limit: u32,
}

/// `wardctl demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Scenario file (YAML) to play instead of the shipped demo
    /// (services/wardctl/scenarios/demo.yaml).
    #[arg(long)]
    pub scenario: Option<std::path::PathBuf>,
    /// Seconds to wait for intake to answer.
    #[arg(long, default_value_t = 60)]
    pub wait_secs: u64,
    /// Seconds to wait for routing to assign or queue each call.
    #[arg(long, default_value_t = 15)]
    pub routing_wait_secs: u64,
    /// Seconds to wait for billing: to learn the tenants, then to rate the calls.
    #[arg(long, default_value_t = 15)]
    pub billing_wait_secs: u64,
    /// Seconds to wait for notification's deliveries about the calls.
    #[arg(long, default_value_t = 15)]
    pub notification_wait_secs: u64,
    /// Directory a local mail sink writes notification's email to (as
    /// scripts/demo.sh runs it): the summary counts this run's messages there.
    #[arg(long)]
    pub mail_dir: Option<std::path::PathBuf>,
}

fn parse_secret(s: &str) -> Result<SecretString, String> {
    if s.is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(SecretString::from(s))
    }
}

fn parse_request_id(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 128 || !s.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
        Err("a request id is 1-128 printable ASCII characters".into())
    } else {
        Ok(s.to_owned())
    }
}

/// Parses `id=name`.
pub fn parse_facility(s: &str) -> Result<FacilityArg, String> {
    match s.split_once('=') {
        Some((id, name)) if !id.trim().is_empty() && !name.trim().is_empty() => Ok(FacilityArg {
            id: id.trim().to_owned(),
            name: name.trim().to_owned(),
        }),
        _ => Err(format!(
            "expected id=name, e.g. main-campus=\"Main Campus\"; got {s:?}"
        )),
    }
}

/// A clap value parser for any protobuf enum: its labels (any case), which
/// `--help` lists and errors suggest. `value_parser = proto_enum::<Category>()`.
pub fn proto_enum<E: ProtoEnum + Send + Sync>() -> EnumParser<E> {
    EnumParser(PhantomData)
}

/// See [`proto_enum`].
#[derive(Debug)]
pub struct EnumParser<E>(PhantomData<fn() -> E>);

impl<E> Clone for EnumParser<E> {
    fn clone(&self) -> Self {
        Self(PhantomData)
    }
}

impl<E: ProtoEnum + Send + Sync> TypedValueParser for EnumParser<E> {
    type Value = E;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<E, clap::Error> {
        if let Some(v) = value.to_str().and_then(E::from_label) {
            return Ok(v);
        }
        // Not a label: let clap word the error (with the possible values).
        let labels = E::LABELS.iter().map(|(_, l)| *l);
        PossibleValuesParser::new(labels)
            .parse_ref(cmd, arg, value)
            .and_then(|s| {
                E::from_label(&s)
                    .ok_or_else(|| clap::Error::new(clap::error::ErrorKind::InvalidValue))
            })
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(
            E::LABELS.iter().map(|(_, l)| PossibleValue::new(*l)),
        ))
    }
}

/// Reads a protobuf enum's label for the compact value parsers
/// (`orders=4`, `ticket-assigned=email`), naming `what` in the error.
pub fn enum_value<E: ProtoEnum>(s: &str, what: &str) -> Result<E, String> {
    E::from_label(s).ok_or_else(|| {
        let labels: Vec<&str> = E::LABELS.iter().map(|(_, l)| *l).collect();
        format!(
            "unknown {what} {:?} (one of {})",
            s.trim(),
            labels.join(", ")
        )
    })
}

mod routing;
pub use routing::*;

mod billing;
pub use billing::*;

mod notification;
pub use notification::*;

/// A role of a minted token, spelled as in the token's claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum RoleArg {
    /// Operates the platform for every tenant.
    #[value(alias = "vendor-admin")]
    VendorAdmin,
    /// Administers one tenant.
    #[value(alias = "tenant-admin")]
    TenantAdmin,
    /// Works tickets.
    Analyst,
    /// Reports problems.
    Requester,
    /// Reads contracts, usage and invoices.
    Billing,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::VendorAdmin => Role::VendorAdmin,
            RoleArg::TenantAdmin => Role::TenantAdmin,
            RoleArg::Analyst => Role::Analyst,
            RoleArg::Requester => Role::Requester,
            RoleArg::Billing => Role::Billing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use secrecy::ExposeSecret;

    pub(crate) fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("wardctl").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_full_ticket_create_parses() {
        let cli = parse(&[
            "--tenant",
            "stmarys",
            "ticket",
            "create",
            "--facility",
            "main-campus",
            "--caller-id",
            "rn.alvarez",
            "--caller-name",
            "Maria Alvarez",
            "--caller-role",
            "nurse",
            "--caller-phone",
            "+13125550142",
            "--channel",
            "phone",
            "--category",
            "Medication-Administration",
            "--urgency",
            "critical",
            "--impact",
            "single-user",
            "--patient-care-blocked",
            "--description",
            "scanner will not scan",
            "--request-id",
            "r-1",
        ])
        .unwrap();
        assert_eq!(cli.tenant.as_deref(), Some("stmarys"));
        assert_eq!(cli.request_id.as_deref(), Some("r-1"));
        let Command::Ticket(TicketCommand::Create(a)) = cli.command else {
            panic!("not ticket create: {:?}", cli.command)
        };
        assert_eq!(a.caller_role, CallerRole::Nurse);
        assert_eq!(a.category, Some(Category::MedicationAdministration));
        assert_eq!(a.impact, Impact::SingleUser);
        assert!(a.patient_care_blocked);
        assert_eq!(a.caller_email, None);
    }

    #[test]
    fn enum_values_are_the_proto_labels() {
        let err = parse(&[
            "ticket",
            "create",
            "--facility",
            "x",
            "--caller-id",
            "a",
            "--caller-name",
            "b",
            "--caller-role",
            "surgeon",
            "--channel",
            "phone",
            "--urgency",
            "low",
            "--impact",
            "single-user",
            "--description",
            "d",
        ])
        .unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::InvalidValue);
        assert!(err.to_string().contains("non-clinical"), "{err}");
        let cli = parse(&[
            "ticket",
            "list",
            "--status",
            "new,in-progress",
            "--status",
            "on-hold",
            "--priority",
            "P1",
            "--priority",
            "p2",
            "--limit",
            "7",
        ])
        .unwrap();
        let Command::Ticket(TicketCommand::List(a)) = cli.command else {
            panic!("not ticket list")
        };
        use TicketStatus::*;
        assert_eq!(a.statuses, vec![New, InProgress, OnHold]);
        assert_eq!(a.priorities, vec![Priority::P1, Priority::P2]);
        assert!(parse(&["ticket", "list", "--status", "unspecified"]).is_err());
        assert!(parse(&["ticket", "list", "--limit", "0"]).is_err());
        let cli = parse(&["ticket", "hold", "abc", "--reason", "awaiting-caller"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Ticket(TicketCommand::Hold {
                reason: HoldReason::AwaitingCaller,
                ..
            })
        ));
        assert_eq!(
            enum_value::<Category>("printing", "category"),
            Ok(Category::Printing)
        );
        let err = enum_value::<Category>("printers", "category").unwrap_err();
        assert!(
            err.contains("unknown category \"printers\" (one of orders,"),
            "{err}"
        );
    }

    #[test]
    fn tenant_create_takes_facilities_as_id_equals_name() {
        let cli = parse(&[
            "tenant",
            "create",
            "--id",
            "stmarys",
            "--name",
            "St Mary's",
            "--time-zone",
            "America/Chicago",
            "--prefix",
            "STM",
            "--facility",
            "main=Main Campus",
        ])
        .unwrap();
        let Command::Tenant(TenantCommand::Create { facilities, .. }) = cli.command else {
            panic!("not tenant create")
        };
        assert_eq!(facilities[0].name, "Main Campus");
        assert!(parse_facility("nameless").is_err());
        assert!(parse_facility("=x").is_err());
    }

    #[test]
    fn token_roles_use_claim_spelling_and_global_tenant() {
        let cli = parse(&[
            "token",
            "--subject",
            "rn.jones",
            "--tenant",
            "stmarys",
            "--role",
            "tenant_admin",
            "--role",
            "analyst",
            "--secret",
            "s3cret",
            "--ttl-minutes",
            "30",
        ])
        .unwrap();
        assert_eq!(cli.secret.as_ref().unwrap().expose_secret(), "s3cret");
        let Command::Token(t) = cli.command else {
            panic!("not token")
        };
        assert_eq!(t.roles, vec![RoleArg::TenantAdmin, RoleArg::Analyst]);
        for v in RoleArg::value_variants() {
            let claim = serde_json::to_value(Role::from(*v)).unwrap();
            assert_eq!(claim, v.to_possible_value().unwrap().get_name());
        }
        assert!(
            parse(&["token", "--subject", "x"]).is_err(),
            "a role is required"
        );
    }

    #[test]
    fn secrets_and_request_ids_are_checked() {
        let cli = parse(&["--secret", "do-not-print-me", "tenant", "list"]).unwrap();
        assert!(!format!("{cli:?}").contains("do-not-print-me"));
        assert!(parse(&["--request-id", "", "tenant", "list"]).is_err());
        assert!(parse(&["--request-id", &"x".repeat(129), "tenant", "list"]).is_err());
        assert!(parse(&["--request-id", "a\u{e9}", "tenant", "list"]).is_err());
    }
}

/// `wardctl audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only records about this ticket (id or number).
    #[arg(long)]
    pub ticket: Option<String>,
    /// Only records naming this resource id (analyst, endpoint, ...).
    #[arg(long, conflicts_with = "ticket")]
    pub resource: Option<String>,
    /// Only what this subject (token subject) did.
    #[arg(long)]
    pub subject: Option<String>,
    /// The service whose records to read (intake holds every read of a
    /// ticket's text).
    #[arg(long, value_enum, default_value_t = Service::Intake)]
    pub service: Service,
    /// At most this many records (pages are followed until reached).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub limit: u32,
    /// CSV on standard output (for a records request), instead of a table.
    #[arg(long, conflicts_with = "json")]
    pub csv: bool,
}
