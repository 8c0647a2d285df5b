//! The command line: global flags, subcommands, and the value enums that
//! map one to one onto the protobuf enums.
//!
//! What must hold: every value a user types for an enum is spelled exactly
//! as wardctl prints it back (`medication-administration`, `in-progress`,
//! `p1`), which the tests check against the protobuf names, so output can be
//! pasted into the next command.

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::SecretString;
use wardline_kit::auth::Role;
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

    /// Secret that signs development tokens (HS256); must match the services'.
    #[arg(
        long,
        env = "WARDLINE_JWT_SECRET",
        hide_env_values = true,
        value_parser = parse_secret,
        global = true
    )]
    pub secret: Option<SecretString>,

    /// A ready bearer token to use instead of minting one from --secret.
    #[arg(
        long,
        env = "WARDCTL_TOKEN",
        hide_env_values = true,
        value_parser = parse_secret,
        global = true
    )]
    pub token: Option<SecretString>,

    /// Tenant to act on (sent as x-tenant-id); also the tenant of `wardctl token`.
    #[arg(long, env = "WARDCTL_TENANT", global = true)]
    pub tenant: Option<String>,

    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,

    /// Show times in UTC even when the tenant's time zone is known.
    #[arg(long, global = true)]
    pub utc: bool,

    /// NATS server (the demo listens for events there).
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
    /// Mint a development bearer token (HS256, signed with --secret) for --tenant.
    Token(TokenArgs),
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
    /// Seed two hospitals with contracts and an analyst roster, file
    /// realistic tickets, show who routing assigned them to, watch their
    /// events arrive, and what billing metered.
    Demo(DemoArgs),
    /// Drive CreateTicket through the whole pipeline (intake, routing,
    /// billing, notification) and print latency per stage, throughput, CPU
    /// per ticket and this machine's PostgreSQL and JetStream limits.
    Load(LoadArgs),
}

/// The service a command mainly talks to, for hints about the setup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
            Command::Token(_)
            | Command::Tenant(_)
            | Command::Ticket(_)
            | Command::Demo(_)
            | Command::Load(_) => (Service::Intake, &self.intake_url),
        }
    }
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
    /// Lifetime in hours.
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u64).range(1..=24 * 366))]
    pub ttl_hours: u64,
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
        #[arg(long, value_enum)]
        reason: HoldReasonArg,
    },
    /// Resolve a ticket.
    Resolve {
        #[command(flatten)]
        target: TicketRef,
        /// How it was resolved.
        #[arg(long, value_enum)]
        code: ResolutionArg,
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
        #[arg(long, value_enum)]
        reason: TransferReasonArg,
        /// Corrected category.
        #[arg(long, value_enum)]
        category: Option<CategoryArg>,
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
    #[arg(long, value_enum)]
    pub caller_role: CallerRoleArg,
    /// Caller's email for updates.
    #[arg(long)]
    pub caller_email: Option<String>,
    /// Caller's call-back phone in E.164, e.g. +13125550100.
    #[arg(long)]
    pub caller_phone: Option<String>,
    /// How the ticket arrived.
    #[arg(long, value_enum)]
    pub channel: ChannelArg,
    /// Application code (intake assumes ehr when absent).
    #[arg(long)]
    pub application: Option<String>,
    /// Category (intake classifies the description when absent).
    #[arg(long, value_enum)]
    pub category: Option<CategoryArg>,
    /// How soon the caller needs it fixed.
    #[arg(long, value_enum)]
    pub urgency: UrgencyArg,
    /// How many people it touches.
    #[arg(long, value_enum)]
    pub impact: ImpactArg,
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
    #[arg(long = "status", value_enum, value_delimiter = ',')]
    pub statuses: Vec<StatusArg>,
    /// Only these priorities (repeatable or comma-separated).
    #[arg(
        long = "priority",
        value_enum,
        value_delimiter = ',',
        ignore_case = true
    )]
    pub priorities: Vec<PriorityArg>,
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
    /// Seconds to wait for intake to answer.
    #[arg(long, default_value_t = 60)]
    pub wait_secs: u64,
    /// Seconds to wait for the expected events.
    #[arg(long, default_value_t = 10)]
    pub event_wait_secs: u64,
    /// Seconds to wait for routing to assign or queue each ticket.
    #[arg(long, default_value_t = 15)]
    pub routing_wait_secs: u64,
    /// Seconds to wait for billing to rate the demo's calls.
    #[arg(long, default_value_t = 10)]
    pub billing_wait_secs: u64,
    /// Seconds to wait for notification's deliveries about the demo's tickets.
    #[arg(long, default_value_t = 15)]
    pub notification_wait_secs: u64,
    /// Directory a local mail sink writes notification's email to (as
    /// scripts/demo.sh runs it): the summary counts this run's messages there.
    #[arg(long)]
    pub mail_dir: Option<std::path::PathBuf>,
}

/// Default PostgreSQL of the load command's limit probe.
pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// `wardctl load`.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Fixed arrival rate in tickets per second (open loop; the default is 50
    /// unless --flat-out).
    #[arg(long, value_parser = parse_positive)]
    pub rate: Option<f64>,
    /// Send as fast as --concurrency callers can, each waiting for its answer.
    #[arg(long, conflicts_with = "rate")]
    pub flat_out: bool,
    /// Callers of --flat-out.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=4096))]
    pub concurrency: u16,
    /// Seconds to send (measured part; default 10 unless --tickets).
    #[arg(long, value_parser = parse_positive, conflicts_with = "tickets")]
    pub duration: Option<f64>,
    /// Tickets to send (measured part).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub tickets: Option<u64>,
    /// Fresh tenants the tickets are spread over (round robin).
    #[arg(long, default_value_t = 10)]
    pub tenants: u32,
    /// Analysts per tenant (capacity sized so the planned tickets need not queue).
    #[arg(long, default_value_t = 5)]
    pub analysts: u32,
    /// Seconds of sending before measuring (those tickets flow but are not counted).
    #[arg(long, default_value_t = 0.0, value_parser = parse_non_negative)]
    pub warmup: f64,
    /// Seconds to wait after sending for assignments, billing and notifications.
    #[arg(long, default_value_t = 60)]
    pub drain_secs: u64,
    /// PostgreSQL the limit probe writes to (a scratch schema, dropped after).
    #[arg(long, env = "WARDCTL_PG_URL", default_value = DEFAULT_PG_URL, hide_env_values = true)]
    pub pg_url: String,
    /// Seconds each limit probe runs.
    #[arg(long, default_value_t = 3.0, value_parser = parse_positive)]
    pub limit_secs: f64,
    /// Do not measure the PostgreSQL and JetStream limits.
    #[arg(long)]
    pub skip_limits: bool,
}

fn parse_positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 1e7 => Ok(v),
        _ => Err(format!("expected a positive number, got {s:?}")),
    }
}

fn parse_non_negative(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=86_400.0).contains(&v) => Ok(v),
        _ => Err(format!("expected seconds >= 0, got {s:?}")),
    }
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

/// Declares a value enum and its one-to-one mapping onto a protobuf enum.
macro_rules! value_enum {
    ($(#[$meta:meta])* $name:ident => $proto:ty { $($(#[$vmeta:meta])* $variant:ident => $pv:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl From<$name> for $proto {
            fn from(v: $name) -> Self {
                match v {
                    $($name::$variant => <$proto>::$pv),+
                }
            }
        }

        impl $name {
            /// The protobuf value as sent on the wire.
            pub fn wire(self) -> i32 {
                <$proto>::from(self) as i32
            }
        }
    };
}

mod routing;
pub use routing::*;

mod billing;
pub use billing::*;

mod notification;
pub use notification::*;

value_enum!(
    /// The caller's role.
    CallerRoleArg => CallerRole {
        Nurse => Nurse,
        Physician => Physician,
        Pharmacist => Pharmacist,
        OtherClinical => OtherClinical,
        NonClinical => NonClinical,
    }
);

value_enum!(
    /// How a ticket arrived.
    ChannelArg => Channel {
        Phone => Phone,
        Portal => Portal,
        Email => Email,
        Api => Api,
    }
);

value_enum!(
    /// What a ticket is about.
    CategoryArg => Category {
        Orders => Orders,
        MedicationAdministration => MedicationAdministration,
        ClinicalDocumentation => ClinicalDocumentation,
        Results => Results,
        PatientLists => PatientLists,
        Scheduling => Scheduling,
        RegistrationAdt => RegistrationAdt,
        LoginAccess => LoginAccess,
        Devices => Devices,
        Printing => Printing,
        Network => Network,
        Other => Other,
    }
);

value_enum!(
    /// How soon the caller needs it.
    UrgencyArg => Urgency {
        Critical => Critical,
        High => High,
        Medium => Medium,
        Low => Low,
    }
);

value_enum!(
    /// How many people it touches.
    ImpactArg => Impact {
        Widespread => Widespread,
        Department => Department,
        MultipleUsers => MultipleUsers,
        SingleUser => SingleUser,
    }
);

value_enum!(
    /// Lifecycle state.
    StatusArg => TicketStatus {
        New => New,
        Assigned => Assigned,
        Acknowledged => Acknowledged,
        InProgress => InProgress,
        OnHold => OnHold,
        Resolved => Resolved,
        Closed => Closed,
    }
);

value_enum!(
    /// Priority.
    PriorityArg => Priority {
        P1 => P1,
        P2 => P2,
        P3 => P3,
        P4 => P4,
    }
);

value_enum!(
    /// Why a ticket waits.
    HoldReasonArg => HoldReason {
        AwaitingCaller => AwaitingCaller,
        AwaitingVendor => AwaitingVendor,
        AwaitingChange => AwaitingChange,
        Other => Other,
    }
);

value_enum!(
    /// How a ticket was resolved.
    ResolutionArg => ResolutionCode {
        Education => Education,
        Configuration => Configuration,
        AccessGranted => AccessGranted,
        Hardware => Hardware,
        VendorFix => VendorFix,
        NoFaultFound => NoFaultFound,
        Duplicate => Duplicate,
        Other => Other,
    }
);

value_enum!(
    /// Why a ticket goes back to routing.
    TransferReasonArg => TransferReason {
        WrongSkill => WrongSkill,
        NeedsTier2 => NeedsTier2,
        ShiftEnd => ShiftEnd,
        Other => Other,
    }
);

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
    use crate::render;
    use clap::CommandFactory;
    use secrecy::ExposeSecret;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
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
            "medication-administration",
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
        assert_eq!(a.caller_role, CallerRoleArg::Nurse);
        assert_eq!(a.category, Some(CategoryArg::MedicationAdministration));
        assert_eq!(a.impact, ImpactArg::SingleUser);
        assert!(a.patient_care_blocked);
        assert_eq!(a.caller_email, None);
        assert_eq!(
            Category::from(a.category.unwrap()),
            Category::MedicationAdministration
        );
        assert_eq!(a.urgency.wire(), Urgency::Critical as i32);
    }

    #[test]
    fn required_ticket_fields_are_enforced() {
        let err = parse(&["ticket", "create", "--facility", "x"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
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
    }

    #[test]
    fn list_filters_repeat_or_split_on_commas() {
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
        assert_eq!(
            a.statuses,
            vec![StatusArg::New, StatusArg::InProgress, StatusArg::OnHold]
        );
        assert_eq!(a.priorities, vec![PriorityArg::P1, PriorityArg::P2]);
        assert_eq!(a.limit, 7);
        assert!(parse(&["ticket", "list", "--limit", "0"]).is_err());
    }

    #[test]
    fn lifecycle_commands_parse() {
        let cli = parse(&[
            "ticket",
            "resolve",
            "STM-000042",
            "--code",
            "no-fault-found",
            "--fcr",
        ])
        .unwrap();
        let Command::Ticket(TicketCommand::Resolve { target, code, fcr }) = cli.command else {
            panic!("not resolve")
        };
        assert_eq!(target.ticket, "STM-000042");
        assert_eq!(target.expected_version, None);
        assert_eq!(ResolutionCode::from(code), ResolutionCode::NoFaultFound);
        assert!(fcr);

        let cli = parse(&["ticket", "acknowledge", "abc", "--expected-version", "3"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Ticket(TicketCommand::Ack(TicketRef {
                expected_version: Some(3),
                ..
            }))
        ));
        let cli = parse(&["ticket", "hold", "abc", "--reason", "awaiting-caller"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Ticket(TicketCommand::Hold {
                reason: HoldReasonArg::AwaitingCaller,
                ..
            })
        ));
        let cli = parse(&[
            "ticket",
            "transfer",
            "abc",
            "--reason",
            "needs-tier2",
            "--category",
            "orders",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Ticket(TicketCommand::Transfer {
                reason: TransferReasonArg::NeedsTier2,
                category: Some(CategoryArg::Orders),
                ..
            })
        ));
        assert!(
            parse(&["ticket", "resolve", "abc"]).is_err(),
            "--code is required"
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
            "--facility",
            "north=North Clinic",
        ])
        .unwrap();
        let Command::Tenant(TenantCommand::Create { facilities, .. }) = cli.command else {
            panic!("not tenant create")
        };
        assert_eq!(
            facilities,
            vec![
                FacilityArg {
                    id: "main".into(),
                    name: "Main Campus".into()
                },
                FacilityArg {
                    id: "north".into(),
                    name: "North Clinic".into()
                },
            ]
        );
        assert!(parse_facility("nameless").is_err());
        assert!(parse_facility("=x").is_err());
        assert!(parse_facility("x=").is_err());
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
            "--ttl-hours",
            "2",
            "--secret",
            "s3cret",
        ])
        .unwrap();
        assert_eq!(cli.tenant.as_deref(), Some("stmarys"));
        assert_eq!(cli.secret.as_ref().unwrap().expose_secret(), "s3cret");
        let Command::Token(t) = cli.command else {
            panic!("not token")
        };
        assert_eq!(t.roles, vec![RoleArg::TenantAdmin, RoleArg::Analyst]);
        assert_eq!(t.ttl_hours, 2);
        for v in RoleArg::value_variants() {
            let claim = serde_json::to_value(Role::from(*v)).unwrap();
            assert_eq!(claim, v.to_possible_value().unwrap().get_name());
        }
        assert!(parse(&["token", "--subject", "x", "--role", "vendor-admin"]).is_ok());
        assert!(
            parse(&["token", "--subject", "x"]).is_err(),
            "a role is required"
        );
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let cli = parse(&["--secret", "do-not-print-me", "tenant", "list"]).unwrap();
        assert!(!format!("{cli:?}").contains("do-not-print-me"));
    }

    #[test]
    fn request_ids_are_checked() {
        assert!(parse(&["--request-id", "", "tenant", "list"]).is_err());
        assert!(parse(&["--request-id", &"x".repeat(129), "tenant", "list"]).is_err());
        assert!(parse(&["--request-id", "a\u{e9}", "tenant", "list"]).is_err());
    }

    /// Every value a user types is the label wardctl prints for it, and no
    /// two values map onto the same protobuf value.
    #[test]
    fn input_spelling_matches_output_labels() {
        fn check<A: ValueEnum + Copy>(label: impl Fn(A) -> String) {
            let mut seen = std::collections::HashSet::new();
            for v in A::value_variants() {
                let typed = v.to_possible_value().unwrap().get_name().to_owned();
                assert_eq!(label(*v), typed);
                assert!(seen.insert(typed));
            }
        }
        check(|v: CallerRoleArg| render::caller_role(v.wire()));
        check(|v: ChannelArg| render::channel(v.wire()));
        check(|v: CategoryArg| render::category(v.wire()));
        check(|v: UrgencyArg| render::urgency(v.wire()));
        check(|v: ImpactArg| render::impact(v.wire()));
        check(|v: StatusArg| render::status(v.wire()));
        check(|v: PriorityArg| render::priority(v.wire()).to_ascii_lowercase());
        check(|v: HoldReasonArg| render::hold_reason(v.wire()));
        check(|v: ResolutionArg| render::resolution(v.wire()));
        check(|v: TransferReasonArg| render::transfer_reason(v.wire()));
        // Every specified protobuf category is reachable from the command line.
        let wires: Vec<i32> = CategoryArg::value_variants()
            .iter()
            .map(|c| c.wire())
            .collect();
        for n in 1..=12 {
            assert!(
                Category::try_from(n).is_ok() && wires.contains(&n),
                "category {n}"
            );
        }
        assert!(
            Category::try_from(13).is_err(),
            "a new category needs a CategoryArg"
        );
    }
}
