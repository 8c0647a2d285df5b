//! The authorization table (`docs/authorization.md`) against the four real
//! services: every RPC the proto descriptors declare has a row, and every
//! row is honoured.
//!
//! Three checks, all generic (no RPC is special-cased here, so a new RPC is
//! covered the moment it is added to the table, and fails the test until
//! it is):
//! 1. **Coverage**: the table's rows and the descriptors' methods are the
//!    same set, per service.
//! 2. **Roles**: each method is called with an empty request by each kind
//!    of caller of `stmarys`. A `—` cell must answer PERMISSION_DENIED
//!    (before anything else is looked at: the request is empty); any other
//!    must get past authorization.
//! 3. **Scopes**: `stmarys` gets real rows (a ticket with a note, an
//!    analyst, a webhook endpoint, a contract, deliveries). Each method is
//!    then called with every id field of its request set to those rows'
//!    ids, by every caller of `lakeside` the table lets in at `tenant` or
//!    `own` scope, and (for `own` cells) by another person of `stmarys` in
//!    the same role. No answer may carry any of `stmarys`'s ids or text, and
//!    afterwards `stmarys`'s rows read exactly as before.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::{Buf, BufMut};
use common::*;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, Kind, MethodDescriptor, Value};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};
use wardline_kit::auth::Role;
use wardline_proto::billing::CreateContractVersionRequest;
use wardline_proto::billing::contract_service_client::ContractServiceClient;
use wardline_proto::common::{CallerRole, Category, TicketStatus};
use wardline_proto::intake::{AcknowledgeTicketRequest, AddNoteRequest, Caller};
use wardline_proto::notification::webhook_service_client::WebhookServiceClient;
use wardline_proto::notification::{CreateWebhookEndpointRequest, EventKind};
use wardline_proto::routing::SkillModule;
use wardline_testkit::{Auth, HttpSink, TestDb, TestSmtp};

const HOME: &str = "stmarys";
const AWAY: &str = "lakeside";
/// Text only `stmarys`'s ticket and note hold.
const CANARY: &str = "AUTHZ-CANARY-5d1e Mr Alan Turing MRN 00999123";
const SERVICES: [&str; 4] = ["intake", "routing", "billing", "notification"];

// ------------------------------------------------------------------ table

/// A cell of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Any,
    Tenant,
    Own,
    Denied,
}

/// The table's columns, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Who {
    VendorAll,
    VendorPinned,
    TenantAdmin,
    Analyst,
    Requester,
    Billing,
}

const COLUMNS: [Who; 6] = [
    Who::VendorAll,
    Who::VendorPinned,
    Who::TenantAdmin,
    Who::Analyst,
    Who::Requester,
    Who::Billing,
];

/// `service -> "Service/Method" -> cells`.
type Table = BTreeMap<String, BTreeMap<String, [Scope; 6]>>;

fn table() -> Table {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/authorization.md");
    let text = std::fs::read_to_string(path).expect("docs/authorization.md");
    let mut table = Table::new();
    let mut service: Option<String> = None;
    for line in text.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            service = Some(h.trim().to_owned());
            continue;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // "| rpc | c1 .. c6 |" splits into 9 pieces, the outer two empty.
        if cells.len() != 9 || !cells[1].contains('/') {
            continue;
        }
        let svc = service.clone().expect("a row under a service heading");
        let mut row = [Scope::Denied; 6];
        for (i, c) in cells[2..8].iter().enumerate() {
            row[i] = match *c {
                "any" => Scope::Any,
                "tenant" => Scope::Tenant,
                "own" => Scope::Own,
                "—" => Scope::Denied,
                other => panic!(
                    "docs/authorization.md: {svc} {}: unknown cell {other:?}",
                    cells[1]
                ),
            };
        }
        let dup = table
            .entry(svc.clone())
            .or_default()
            .insert(cells[1].to_owned(), row);
        assert!(dup.is_none(), "{svc} {} has two rows", cells[1]);
    }
    table
}

/// The descriptor of every method each service serves: its own package's
/// services, and the common ones every service serves (dead letters).
fn methods(pool: &DescriptorPool) -> BTreeMap<String, BTreeMap<String, MethodDescriptor>> {
    let mut out: BTreeMap<String, BTreeMap<String, MethodDescriptor>> = BTreeMap::new();
    for s in pool.services() {
        let owners: Vec<&str> = match s.package_name() {
            "wardline.common.v1" => SERVICES.to_vec(),
            p => SERVICES
                .iter()
                .copied()
                .filter(|svc| p == format!("wardline.{svc}.v1"))
                .collect(),
        };
        for m in s.methods() {
            for svc in &owners {
                out.entry((*svc).to_owned())
                    .or_default()
                    .insert(format!("{}/{}", s.name(), m.name()), m.clone());
            }
        }
    }
    out
}

#[test]
fn every_rpc_has_exactly_one_line_in_the_table() {
    let pool = DescriptorPool::decode(wardline_proto::FILE_DESCRIPTOR_SET).unwrap();
    let declared = methods(&pool);
    let table = table();
    for svc in SERVICES {
        let served: BTreeSet<&String> = declared[svc].keys().collect();
        let written: BTreeSet<&String> = table
            .get(svc)
            .unwrap_or_else(|| panic!("docs/authorization.md has no `## {svc}` table"))
            .keys()
            .collect();
        let missing: Vec<_> = served.difference(&written).collect();
        let stale: Vec<_> = written.difference(&served).collect();
        assert!(
            missing.is_empty(),
            "{svc}: RPCs without a line in docs/authorization.md: {missing:?}"
        );
        assert!(
            stale.is_empty(),
            "{svc}: lines in docs/authorization.md naming no RPC: {stale:?}"
        );
    }
}

// ------------------------------------------------------------ raw calls

/// Sends and receives encoded messages as they are, so any method can be
/// called with a message built from its descriptor.
#[derive(Debug, Clone, Default)]
struct RawCodec;

#[derive(Debug, Clone, Default)]
struct Raw;

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

/// A caller: a bearer token and, for all-tenants tokens, the tenant named.
#[derive(Debug, Clone)]
struct Credentials {
    token: String,
    tenant_header: Option<String>,
    label: String,
}

fn credentials(who: Who, tenant: &str, person: &str) -> Credentials {
    let t = |roles: &[Role], on: &str| wardline_testkit::token(person, on, roles);
    let (token, tenant_header) = match who {
        Who::VendorAll => (t(&[Role::VendorAdmin], "*"), Some(tenant.to_owned())),
        Who::VendorPinned => (t(&[Role::VendorAdmin], tenant), None),
        Who::TenantAdmin => (t(&[Role::TenantAdmin], tenant), None),
        Who::Analyst => (t(&[Role::Analyst], tenant), None),
        Who::Requester => (t(&[Role::Requester], tenant), None),
        Who::Billing => (t(&[Role::Billing], tenant), None),
    };
    Credentials {
        token,
        tenant_header,
        label: format!("{who:?} {person}@{tenant}"),
    }
}

async fn call(
    addr: std::net::SocketAddr,
    method: &MethodDescriptor,
    body: Vec<u8>,
    who: &Credentials,
) -> Result<Vec<u8>, Status> {
    let mut grpc = tonic::client::Grpc::new(wardline_testkit::channel(addr));
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let path = format!("/{}/{}", method.parent_service().full_name(), method.name());
    let mut req = tonic::Request::new(body);
    let bearer: MetadataValue<_> = format!("Bearer {}", who.token).parse().unwrap();
    req.metadata_mut().insert("authorization", bearer);
    if let Some(t) = &who.tenant_header {
        req.metadata_mut()
            .insert("x-tenant-id", t.parse().expect("ASCII tenant"));
    }
    req.set_timeout(Duration::from_secs(10));
    grpc.unary(req, path.parse().unwrap(), RawCodec)
        .await
        .map(tonic::Response::into_inner)
}

// ------------------------------------------------------------ the world

struct World {
    s: Stack,
    billing: Running,
    notification: Running,
    _dbs: Vec<TestDb>,
    _smtp: TestSmtp,
    _sinks: Vec<HttpSink>,
    hooks: HttpSink,
}

impl World {
    fn addr(&self, svc: &str) -> std::net::SocketAddr {
        match svc {
            "intake" => self.s.intake.grpc,
            "routing" => self.s.routing_grpc,
            "billing" => self.billing.grpc,
            "notification" => self.notification.grpc,
            other => panic!("no service {other}"),
        }
    }
}

async fn world() -> World {
    let s = spawn_stack().await;
    let billing_db = TestDb::create("authz_billing").await;
    let notification_db = TestDb::create("authz_notification").await;
    let smtp = TestSmtp::start().await;
    let (sms, pager, hooks) = (
        HttpSink::start().await,
        HttpSink::start().await,
        HttpSink::start().await,
    );
    let billing = start_billing(&billing_db, &s.nats).await;
    let notification = start_notification(&notification_db, &s.nats, &smtp, &sms, &pager).await;
    World {
        s,
        billing,
        notification,
        _dbs: vec![billing_db, notification_db],
        _smtp: smtp,
        _sinks: vec![sms, pager],
        hooks,
    }
}

/// `stmarys`'s rows: the ids a foreign request carries (by field name),
/// and the strings no foreign answer may contain.
struct HomeRows {
    ids: BTreeMap<&'static str, String>,
    secrets: Vec<String>,
}

const ANALYST: &str = "an-stmarys-only";
const REQUESTER: &str = "rn-stmarys-1";

async fn home_rows(w: &World) -> HomeRows {
    for (id, prefix) in [(HOME, "STM"), (AWAY, "LKS")] {
        w.s.create_tenant(id, prefix).await;
    }
    w.s.upsert(analyst(ANALYST, HOME, SkillModule::Printing, 3))
        .await;
    let mut req = ticket_request("authz-1", CallerRole::Nurse, Category::Printing, false);
    req.caller = Some(Caller {
        caller_id: REQUESTER.into(),
        ..req.caller.unwrap()
    });
    req.description = format!("Printer jams; {CANARY}");
    // The requester's identity provider states the contacts the call names.
    let contact = req.caller.clone().unwrap();
    let requester = wardline_testkit::requester_token(
        REQUESTER,
        HOME,
        Some(&contact.email)
            .filter(|e| !e.is_empty())
            .map(String::as_str),
        Some(&contact.phone)
            .filter(|p| !p.is_empty())
            .map(String::as_str),
    );
    let ticket =
        w.s.tickets(&requester)
            .create_ticket(req)
            .await
            .expect("ticket")
            .into_inner();
    w.s.ticket_until(HOME, &ticket.ticket_id, "assigned", |t| {
        t.status() == TicketStatus::Assigned
    })
    .await;
    // Acknowledged, so no acknowledgement timer re-routes it mid-test.
    w.s.tickets(&analyst_token(HOME, ANALYST))
        .acknowledge_ticket(AcknowledgeTicketRequest {
            request_id: "authz-ack".into(),
            ticket_id: ticket.ticket_id.clone(),
            expected_version: 0,
        })
        .await
        .expect("acknowledged");
    let note =
        w.s.tickets(&admin_token(HOME))
            .add_note(AddNoteRequest {
                request_id: "authz-note".into(),
                ticket_id: ticket.ticket_id.clone(),
                body: format!("Called back; {CANARY}"),
                public: true,
            })
            .await
            .expect("note")
            .into_inner();
    let endpoint = WebhookServiceClient::with_interceptor(
        wardline_testkit::channel(w.notification.grpc),
        Auth::new(&admin_token(HOME), None),
    )
    .create_webhook_endpoint(CreateWebhookEndpointRequest {
        request_id: "authz-hook".into(),
        url: w.hooks.url("/wardline"),
        event_kinds: vec![EventKind::TicketAssigned as i32],
    })
    .await
    .expect("endpoint")
    .into_inner()
    .endpoint
    .expect("the endpoint");
    let contract = ContractServiceClient::with_interceptor(
        wardline_testkit::channel(w.billing.grpc),
        Auth::new(&vendor_token(), Some(HOME)),
    )
    .create_contract_version(CreateContractVersionRequest {
        request_id: "authz-contract".into(),
        contract: Some(wardline_billing::contract::example("USD", "2026-01-01")),
        expected_latest_version: 0,
    })
    .await
    .expect("contract")
    .into_inner();
    let vendor = credentials(Who::VendorAll, HOME, "ops");
    let recipient = first_id(
        w,
        "notification",
        "RecipientService/ListRecipients",
        "recipient_id",
        &vendor,
    )
    .await;
    let delivery = first_id(
        w,
        "notification",
        "DeliveryService/ListDeliveries",
        "delivery_id",
        &vendor,
    )
    .await;
    let assignment = first_id(
        w,
        "routing",
        "QueueService/ListAssignments",
        "assignment_id",
        &vendor,
    )
    .await;
    let ids = BTreeMap::from([
        ("ticket_id", ticket.ticket_id.clone()),
        ("number", ticket.number.clone()),
        ("tenant_id", HOME.to_owned()),
        ("analyst_id", ANALYST.to_owned()),
        ("assignee_analyst_id", ANALYST.to_owned()),
        ("subject_id", ANALYST.to_owned()),
        ("endpoint_id", endpoint.endpoint_id.clone()),
        ("recipient_id", recipient.clone()),
        ("delivery_id", delivery.clone()),
        ("assignment_id", assignment.clone()),
        ("facility_id", "main".to_owned()),
    ]);
    let secrets = vec![
        ticket.ticket_id,
        ticket.number,
        note.note_id,
        endpoint.endpoint_id,
        contract.contract_id,
        recipient,
        delivery,
        assignment,
        ANALYST.to_owned(),
        REQUESTER.to_owned(),
        CANARY.to_owned(),
        HOME.to_owned(),
    ];
    HomeRows { ids, secrets }
}

/// The first value of field `field` in `method`'s answer (waiting for
/// the pipeline to produce one), as `who`.
async fn first_id(w: &World, svc: &str, method: &str, field: &str, who: &Credentials) -> String {
    let pool = pool();
    let m = methods(&pool)[svc][method].clone();
    wardline_testkit::eventually(30, &format!("a {field} from {method}"), || {
        let m = m.clone();
        async move {
            let got = call(w.addr(svc), &m, Vec::new(), who).await.ok()?;
            let answer = DynamicMessage::decode(m.output(), got.as_slice()).ok()?;
            find_string(&answer, field)
        }
    })
    .await
}

/// The first non-empty string field `field` anywhere in `msg`.
fn find_string(msg: &DynamicMessage, field: &str) -> Option<String> {
    for (f, v) in msg.fields() {
        match v {
            Value::String(s) if f.name() == field && !s.is_empty() => return Some(s.clone()),
            Value::Message(m) => {
                if let Some(s) = find_string(m, field) {
                    return Some(s);
                }
            }
            Value::List(items) => {
                for item in items {
                    if let Value::Message(m) = item
                        && let Some(s) = find_string(m, field)
                    {
                        return Some(s);
                    }
                }
            }
            _ => {}
        }
    }
    None
}

fn pool() -> DescriptorPool {
    DescriptorPool::decode(wardline_proto::FILE_DESCRIPTOR_SET).unwrap()
}

/// `method`'s request with every id field aimed at `stmarys`'s rows, a
/// fresh idempotency key, and free text where a request needs some (so
/// the call reaches the lookup instead of stopping at validation).
fn aimed_at(method: &MethodDescriptor, rows: &HomeRows) -> Vec<u8> {
    let mut msg = DynamicMessage::new(method.input());
    for f in method.input().fields() {
        if f.is_list() || f.kind() != Kind::String {
            continue;
        }
        let value = match f.name() {
            "request_id" => uuid::Uuid::new_v4().to_string(),
            "body" | "description" | "name" => "authz probe".to_owned(),
            other => match rows.ids.get(other) {
                Some(id) => id.clone(),
                None => continue,
            },
        };
        msg.set_field(&f, Value::String(value));
    }
    msg.encode_to_vec()
}

/// What `stmarys` looks like through its own reads, as the vendor sees it.
async fn snapshot(w: &World, rows: &HomeRows) -> BTreeMap<String, Vec<u8>> {
    const READS: [(&str, &str); 10] = [
        ("intake", "TenantService/GetTenant"),
        ("intake", "TicketService/GetTicket"),
        ("intake", "TicketService/ListNotes"),
        ("routing", "AnalystService/GetAnalyst"),
        ("routing", "SlaTargetService/GetSlaTargets"),
        ("routing", "RoutingRuleService/GetRoutingRules"),
        ("billing", "ContractService/GetContract"),
        ("notification", "RecipientService/ListRecipients"),
        ("notification", "WebhookService/ListWebhookEndpoints"),
        ("notification", "TemplateService/GetTemplate"),
    ];
    let pool = pool();
    let all = methods(&pool);
    let vendor = credentials(Who::VendorAll, HOME, "ops");
    let mut out = BTreeMap::new();
    for (svc, name) in READS {
        let m = &all[svc][name];
        let answer = call(w.addr(svc), m, aimed_at(m, rows), &vendor).await;
        out.insert(
            format!("{svc} {name}"),
            answer.unwrap_or_else(|s| format!("{:?}", s.code()).into_bytes()),
        );
    }
    out
}

// ------------------------------------------------------------ the test

fn column(who: Who) -> usize {
    COLUMNS.iter().position(|c| *c == who).unwrap()
}

/// The person a column's caller is, per tenant (an analyst and a requester
/// who are not `stmarys`'s rows' owners).
fn person(who: Who, tenant: &str, n: u32) -> String {
    match who {
        Who::Analyst => format!("an-{tenant}-{n}"),
        Who::Requester => format!("rn-{tenant}-{n}"),
        _ => format!("staff-{tenant}-{n}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_gets_exactly_what_the_table_says() {
    let w = world().await;
    let rows = home_rows(&w).await;
    let pool = pool();
    let all = methods(&pool);
    let table = table();
    let mut wrong = Vec::new();

    // 2. Roles, with empty requests.
    for (svc, rpcs) in &table {
        for (name, cells) in rpcs {
            let m = &all[svc.as_str()][name];
            for who in COLUMNS {
                let cell = cells[column(who)];
                let caller = credentials(who, HOME, &person(who, HOME, 1));
                let got = call(w.addr(svc), m, Vec::new(), &caller).await;
                let code = got.as_ref().err().map_or(Code::Ok, Status::code);
                let ok = match cell {
                    Scope::Denied => code == Code::PermissionDenied,
                    _ => !matches!(
                        code,
                        Code::PermissionDenied
                            | Code::Unauthenticated
                            | Code::Unimplemented
                            | Code::Internal
                            | Code::Unknown
                    ),
                };
                if !ok {
                    wrong.push(format!(
                        "{svc} {name} as {}: table says {cell:?}, got {code:?} ({})",
                        caller.label,
                        got.err()
                            .map(|s| s.message().to_owned())
                            .unwrap_or_default()
                    ));
                }
            }
        }
    }

    // 3. Scopes: foreign callers aim at stmarys's rows.
    let before = snapshot(&w, &rows).await;
    for (svc, rpcs) in &table {
        for (name, cells) in rpcs {
            let m = &all[svc.as_str()][name];
            for who in COLUMNS {
                let mut callers = Vec::new();
                match cells[column(who)] {
                    Scope::Tenant => callers.push(credentials(who, AWAY, &person(who, AWAY, 1))),
                    Scope::Own => {
                        callers.push(credentials(who, AWAY, &person(who, AWAY, 1)));
                        callers.push(credentials(who, HOME, &person(who, HOME, 2)));
                    }
                    Scope::Any | Scope::Denied => {}
                }
                for caller in callers {
                    let Ok(answer) = call(w.addr(svc), m, aimed_at(m, &rows), &caller).await else {
                        continue;
                    };
                    for secret in &rows.secrets {
                        if contains(&answer, secret.as_bytes()) {
                            wrong.push(format!(
                                "{svc} {name} as {} answered with stmarys's {secret:?}",
                                caller.label
                            ));
                        }
                    }
                }
            }
        }
    }
    let after = snapshot(&w, &rows).await;
    for (read, was) in &before {
        if after[read] != *was {
            wrong.push(format!("stmarys changed under foreign calls: {read}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} cells not honoured:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
