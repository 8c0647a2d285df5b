//! TicketService: creation, reading, the lifecycle and notes.

use chrono::Utc;
use prost::Message;
use tonic::{Request, Response, Status};
use uuid::Uuid;
use wardline_kit::audit;
use wardline_kit::auth::{Caller, Role};
use wardline_kit::db::Scope;
use wardline_kit::events::{envelope, from_timestamp};
use wardline_kit::grpc::db_status;
use wardline_kit::idempotency::{self, Claim};
use wardline_kit::outbox::TraceContext;
use wardline_kit::validate;
use wardline_proto::common::{CallerRole, Category, Channel, Impact, TicketStatus, Urgency};
use wardline_proto::events::event_envelope::Payload;
use wardline_proto::events::{
    HoldReason, ResolutionCode, TicketAcknowledged, TicketClosed, TicketHeld, TicketNoteAdded,
    TicketReopened, TicketResolved, TicketStarted, TicketTransferred, TransferReason,
};
use wardline_proto::intake::ticket_service_server::TicketService;
use wardline_proto::intake::*;

use super::tenants::decode_replay;
use super::{Api, convert, outbox_status, require_request_id};
use crate::create::{Created, NewTicket, OPERATION};
use crate::domain::lifecycle::{Action, transition};
use crate::domain::{classify, looks_like_number, priority::priority};
use crate::limits;
use crate::storage::{self, NoteRow, Owner, TicketFilter, TicketKey, TicketRow};

const TICKET_ROLES: &[Role] = &[
    Role::Requester,
    Role::Analyst,
    Role::TenantAdmin,
    Role::VendorAdmin,
];
const WORK_ROLES: &[Role] = &[Role::Analyst, Role::TenantAdmin, Role::VendorAdmin];
/// The rule of free-text fields.
fn text_rule(field: &str) -> Status {
    Status::invalid_argument(format!(
        "{field}: 1-{} characters, not blank, no control characters other than line breaks and tabs",
        limits::TEXT
    ))
}

fn record_ticket(t: &TicketRow) {
    let span = tracing::Span::current();
    span.record("ticket_id", tracing::field::display(t.ticket_id));
    span.record("ticket_number", t.number.as_str());
    span.record("priority", convert::priority_label(t.priority));
}

/// Whose tickets `caller` may read and act on. A requester (no desk or
/// admin role) sees only the tickets they created or are named on as the
/// caller; anything else of their hospital is NOT_FOUND, exactly like a
/// missing ticket, so its existence is not revealed either. The desk roles
/// see every ticket of the tenant.
fn owner(caller: &Caller) -> Owner<'_> {
    if caller.has_any(WORK_ROLES) {
        Owner::Any
    } else {
        Owner::Subject(&caller.subject)
    }
}

fn parse_ticket_id(s: &str) -> Result<Uuid, Status> {
    if s.is_empty() {
        return Err(Status::invalid_argument("ticket_id: required"));
    }
    Uuid::parse_str(s).map_err(|_| Status::invalid_argument("ticket_id: not a valid ticket id"))
}

fn not_found(id: &str) -> Status {
    Status::not_found(format!("ticket {id} not found"))
}

fn enum_field<E: TryFrom<i32>>(value: i32, field: &str) -> Result<E, Status> {
    E::try_from(value)
        .map_err(|_| Status::invalid_argument(format!("{field}: unknown value {value}")))
}

/// Validates a create request into a new row (number not yet assigned).
fn validate_create(r: &CreateTicketRequest, tenant: &str) -> Result<TicketRow, Status> {
    require_request_id(&r.request_id)?;
    if r.facility_id.is_empty() {
        return Err(Status::invalid_argument("facility_id: required"));
    }
    if !validate::is_slug(&r.facility_id, 1, limits::FACILITY_ID) {
        return Err(Status::invalid_argument(format!(
            "facility_id: 1-{} of [a-z0-9-], starting with a letter",
            limits::FACILITY_ID
        )));
    }
    let caller = r
        .caller
        .as_ref()
        .ok_or_else(|| Status::invalid_argument("caller: required"))?;
    if !validate::is_display_text(&caller.caller_id, limits::CALLER_ID) {
        return Err(Status::invalid_argument(format!(
            "caller.caller_id: 1-{} characters, no control characters",
            limits::CALLER_ID
        )));
    }
    if !validate::is_display_text(&caller.name, limits::NAME) {
        return Err(Status::invalid_argument(format!(
            "caller.name: 1-{} characters, no control characters",
            limits::NAME
        )));
    }
    let role: CallerRole = enum_field(caller.role, "caller.role")?;
    if role == CallerRole::Unspecified {
        return Err(Status::invalid_argument(
            "caller.role: required (physician, nurse, pharmacist, other clinical or non-clinical)",
        ));
    }
    if !caller.email.is_empty() && !validate::is_email(&caller.email) {
        return Err(Status::invalid_argument(
            "caller.email: not an email address",
        ));
    }
    if !caller.phone.is_empty() && !validate::is_e164(&caller.phone) {
        return Err(Status::invalid_argument(
            "caller.phone: E.164 format, e.g. +13125550100",
        ));
    }
    let channel: Channel = enum_field(r.channel, "channel")?;
    if channel == Channel::Unspecified {
        return Err(Status::invalid_argument("channel: required"));
    }
    let application = if r.application.is_empty() {
        "ehr".to_owned()
    } else {
        r.application.clone()
    };
    if !validate::is_code(&application, limits::APPLICATION) {
        return Err(Status::invalid_argument(format!(
            "application: 1-{} of [a-z0-9_-]",
            limits::APPLICATION
        )));
    }
    let urgency: Urgency = enum_field(r.urgency, "urgency")?;
    if urgency == Urgency::Unspecified {
        return Err(Status::invalid_argument("urgency: required"));
    }
    let impact: Impact = enum_field(r.impact, "impact")?;
    if impact == Impact::Unspecified {
        return Err(Status::invalid_argument("impact: required"));
    }
    if !validate::is_free_text(&r.description, limits::TEXT) {
        return Err(text_rule("description"));
    }
    let given: Category = enum_field(r.category, "category")?;
    let (category, classified) = match given {
        Category::Unspecified => (classify::classify(&r.description), true),
        c => (c, false),
    };
    let now = Utc::now();
    Ok(TicketRow {
        ticket_id: Uuid::now_v7(),
        tenant_id: tenant.to_owned(),
        seq: 0,
        number: String::new(),
        facility_id: r.facility_id.clone(),
        caller_id: caller.caller_id.clone(),
        // The token subject, set by the handler (validation sees only the request).
        created_by: String::new(),
        caller_name: caller.name.trim().to_owned(),
        caller_role: role as i16,
        caller_email: caller.email.clone(),
        caller_phone: caller.phone.clone(),
        channel: channel as i16,
        application,
        category: category as i16,
        category_classified: classified,
        urgency: urgency as i16,
        impact: impact as i16,
        patient_care_blocked: r.patient_care_blocked,
        priority: priority(urgency, impact, r.patient_care_blocked) as i16,
        status: TicketStatus::New as i16,
        description: r.description.clone(),
        assignee_analyst_id: String::new(),
        previous_analyst_id: String::new(),
        queued: false,
        escalation_level: 0,
        breached_targets: Vec::new(),
        resolution_code: 0,
        first_contact_resolution: false,
        reopen_count: 0,
        version: 1,
        routing_seq: 0,
        created_at: now,
        updated_at: now,
        acknowledged_at: None,
        resolved_at: None,
        closed_at: None,
    })
}

/// A requester (a clinician on the portal, an integration without a
/// desk role) calls as themselves: the caller is the token's subject, and
/// the contact details are the ones the identity provider states (its
/// `email` and `phone_number` claims), filled in when left empty. Naming
/// another person (whose recipient entry in notification the ticket would
/// then rewrite), or any address or phone the provider does not state
/// (notification would mail or text it), is refused; only roles that take
/// calls on someone's behalf (analyst, tenant admin, vendor admin) may.
/// A token without the claim leaves that contact empty: no tenant holds a
/// directory of its callers' contacts today, so the provider is the only
/// word Wardline trusts.
fn calls_as_themselves(row: &mut TicketRow, caller: &Caller) -> Result<(), Status> {
    if row.caller_id != caller.subject {
        return Err(Status::permission_denied(
            "caller.caller_id: a requester calls as themselves (the token's subject); analysts take calls for others",
        ));
    }
    stated_contact(
        "caller.email",
        &mut row.caller_email,
        caller.email.as_deref(),
        |a, b| a.eq_ignore_ascii_case(b),
    )?;
    stated_contact(
        "caller.phone",
        &mut row.caller_phone,
        caller.phone.as_deref(),
        |a, b| a == b,
    )
}

/// One contact of a requester: empty takes the provider's claim; anything
/// else must be that claim.
fn stated_contact(
    field: &str,
    given: &mut String,
    claim: Option<&str>,
    same: fn(&str, &str) -> bool,
) -> Result<(), Status> {
    match claim {
        Some(mine) if given.is_empty() => *given = mine.to_owned(),
        Some(mine) if same(mine, given) => {}
        None if given.is_empty() => {}
        Some(_) => {
            return Err(Status::permission_denied(format!(
                "{field}: a requester's updates go where their identity provider states (leave it empty)"
            )));
        }
        None => {
            return Err(Status::permission_denied(format!(
                "{field}: the requester's token states none, and a requester may not name one (leave it empty)"
            )));
        }
    }
    Ok(())
}

/// A lifecycle change: what to do to the row, and the event it publishes.
type Change = Box<dyn FnOnce(&mut TicketRow, &Caller) -> Result<Payload, Status> + Send>;

/// What every lifecycle request has: an operation name, an idempotency
/// key, the ticket and an optional expected version.
trait LifecycleRequest: Message {
    const OPERATION: &'static str;
    fn parts(&self) -> (&str, &str, u64);
}

macro_rules! lifecycle_request {
    ($($ty:ty => $op:literal),* $(,)?) => {$(
        impl LifecycleRequest for $ty {
            const OPERATION: &'static str = $op;
            fn parts(&self) -> (&str, &str, u64) {
                (&self.request_id, &self.ticket_id, self.expected_version)
            }
        }
    )*};
}

lifecycle_request! {
    AcknowledgeTicketRequest => "AcknowledgeTicket",
    StartTicketRequest => "StartTicket",
    HoldTicketRequest => "HoldTicket",
    ResolveTicketRequest => "ResolveTicket",
    CloseTicketRequest => "CloseTicket",
    ReopenTicketRequest => "ReopenTicket",
    TransferTicketRequest => "TransferTicket",
}

impl Api {
    /// The shared path of every lifecycle RPC: authorise, claim the
    /// idempotency key, lock the ticket, check the version, apply the
    /// change, write the event to the outbox, store the response, commit.
    async fn change<R: LifecycleRequest>(
        &self,
        caller: Caller,
        roles: &[Role],
        request: &R,
        change: Change,
    ) -> Result<Response<Ticket>, Status> {
        let operation = R::OPERATION;
        let (request_id, ticket_id, expected_version) = request.parts();
        caller.require(roles)?;
        let tenant = caller.tenant()?.to_owned();
        tracing::Span::current().record("tenant", tenant.as_str());
        require_request_id(request_id)?;
        let id = parse_ticket_id(ticket_id)?;
        let hash = idempotency::request_hash(operation, request);
        let mut tx = self.begin(Scope::Tenant(&tenant)).await?;
        if let Claim::Replay(bytes) =
            idempotency::begin(&mut tx, &tenant, request_id, operation, &hash).await?
        {
            drop(tx);
            return self.replay_ticket(&tenant, owner(&caller), &bytes).await;
        }
        let mut row =
            storage::get_ticket(&mut tx, &tenant, owner(&caller), TicketKey::Id(id), true)
                .await
                .map_err(|e| db_status(&e))?
                .ok_or_else(|| not_found(ticket_id))?;
        record_ticket(&row);
        if expected_version != 0 && expected_version != row.version as u64 {
            return Err(Status::aborted(format!(
                "expected_version: the ticket is at version {}, not {expected_version}",
                row.version
            )));
        }
        let payload = change(&mut row, &caller)?;
        row.version += 1;
        row.updated_at = Utc::now();
        storage::update_ticket(&mut tx, &row)
            .await
            .map_err(|e| db_status(&e))?;
        let env = envelope(
            "intake",
            &tenant,
            &row.ticket_id.to_string(),
            row.version as u64,
            payload,
        );
        wardline_kit::outbox::enqueue(&mut tx, &env)
            .await
            .map_err(outbox_status)?;
        audit::record(
            &mut tx,
            &caller,
            &tenant,
            vec![row.ticket_id.to_string()],
            request_id,
        )
        .await
        .map_err(|e| db_status(&e))?;
        let resp = convert::ticket(&row);
        let stored = convert::stored_ticket(&resp).encode_to_vec();
        idempotency::finish(&mut tx, &tenant, request_id, &stored)
            .await
            .map_err(|e| db_status(&e))?;
        tx.commit().await.map_err(|e| db_status(&e))?;
        tracing::info!(ticket_id = %row.ticket_id, ticket_number = %row.number, version = row.version, operation, "ticket changed");
        Ok(Response::new(resp))
    }

    /// A stored ticket response (kept without PHI) completed from the
    /// ticket's row: the same answer the first request got, if `owner` may
    /// still see the ticket (idempotency keys are per tenant, not per
    /// caller: a requester repeating someone else's key and request learns
    /// nothing but NOT_FOUND).
    pub(crate) async fn replay_ticket(
        &self,
        tenant: &str,
        owner: Owner<'_>,
        bytes: &[u8],
    ) -> Result<Response<Ticket>, Status> {
        let mut t: Ticket = decode_replay(bytes)?.into_inner();
        let id = parse_ticket_id(&t.ticket_id)?;
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let (description, name, email, phone) = storage::ticket_text(&mut tx, tenant, owner, id)
            .await
            .map_err(|e| db_status(&e))?
            .ok_or_else(|| not_found(&t.ticket_id))?;
        tx.commit().await.map_err(|e| db_status(&e))?;
        t.description = description;
        if let Some(c) = t.caller.as_mut() {
            c.name = name;
            c.email = email;
            c.phone = phone;
        }
        Ok(Response::new(t))
    }
}

fn step(row: &mut TicketRow, action: Action) -> Result<(), Status> {
    let to = transition(convert::status_of(row), action)
        .map_err(|e| Status::failed_precondition(e.to_string()))?;
    row.status = to as i16;
    Ok(())
}

/// An analyst changes the lifecycle of their own assignments (or takes an
/// unassigned ticket); tenant and vendor admins, the desk's supervisors,
/// change any.
fn check_owner(row: &TicketRow, caller: &Caller) -> Result<(), Status> {
    let admin = caller.has_any(&[Role::TenantAdmin, Role::VendorAdmin]);
    if !admin && !row.assignee_analyst_id.is_empty() && row.assignee_analyst_id != caller.subject {
        return Err(Status::failed_precondition(format!(
            "the ticket is assigned to analyst {}",
            row.assignee_analyst_id
        )));
    }
    Ok(())
}

#[tonic::async_trait]
impl TicketService for Api {
    async fn create_ticket(
        &self,
        req: Request<CreateTicketRequest>,
    ) -> Result<Response<Ticket>, Status> {
        let caller = Caller::from_request(&req)?;
        caller.require(TICKET_ROLES)?;
        let tenant = caller.tenant()?.to_owned();
        tracing::Span::current().record("tenant", tenant.as_str());
        let r = req.into_inner();
        let mut row = validate_create(&r, &tenant)?;
        row.created_by = caller.subject.clone();
        if !caller.has_any(WORK_ROLES) {
            calls_as_themselves(&mut row, &caller)?;
        }
        self.quota.check(&tenant)?;
        let span = tracing::Span::current();
        span.record("ticket_id", tracing::field::display(row.ticket_id));
        span.record("priority", convert::priority_label(row.priority));
        span.record("category", row.category);
        let hash = idempotency::request_hash(OPERATION, &r);
        let audit = audit::Entry::new(
            &caller,
            &tenant,
            vec![row.ticket_id.to_string()],
            &r.request_id,
        );
        let created = self
            .creates
            .create(NewTicket {
                row,
                request_id: r.request_id,
                hash,
                trace: TraceContext::current(),
                audit,
            })
            .await?;
        let resp = match created {
            Created::Replay(bytes) => {
                return self.replay_ticket(&tenant, owner(&caller), &bytes).await;
            }
            Created::Ticket(t) => *t,
        };
        let span = tracing::Span::current();
        span.record("ticket_number", resp.number.as_str());
        let priority = convert::priority_label(resp.priority as i16);
        metrics::counter!("wardline_tickets_created_total", "priority" => priority).increment(1);
        tracing::info!(ticket_id = %resp.ticket_id, ticket_number = %resp.number, priority, "ticket created");
        Ok(Response::new(resp))
    }

    async fn get_ticket(&self, req: Request<GetTicketRequest>) -> Result<Response<Ticket>, Status> {
        let caller = Caller::from_request(&req)?;
        caller.require(TICKET_ROLES)?;
        let tenant = caller.tenant()?.to_owned();
        let r = req.into_inner();
        let (key, shown) = match (r.ticket_id.is_empty(), r.number.is_empty()) {
            (false, _) => (
                TicketKey::Id(parse_ticket_id(&r.ticket_id)?),
                r.ticket_id.as_str(),
            ),
            (true, false)
                if r.number.len() <= limits::TICKET_NUMBER && looks_like_number(&r.number) =>
            {
                (TicketKey::Number(&r.number), r.number.as_str())
            }
            (true, false) => {
                return Err(Status::invalid_argument(
                    "number: expected a ticket number like STM-000042",
                ));
            }
            (true, true) => {
                return Err(Status::invalid_argument("ticket_id: required (or number)"));
            }
        };
        let mut conn = self.begin(Scope::Tenant(&tenant)).await?;
        let row = storage::get_ticket(&mut conn, &tenant, owner(&caller), key, false)
            .await
            .map_err(|e| db_status(&e))?
            .ok_or_else(|| not_found(shown))?;
        record_ticket(&row);
        // A read of the ticket's text is on record before it is answered.
        audit::record(
            &mut conn,
            &caller,
            &tenant,
            vec![row.ticket_id.to_string()],
            "",
        )
        .await
        .map_err(|e| db_status(&e))?;
        conn.commit().await.map_err(|e| db_status(&e))?;
        Ok(Response::new(convert::ticket(&row)))
    }

    async fn list_tickets(
        &self,
        req: Request<ListTicketsRequest>,
    ) -> Result<Response<ListTicketsResponse>, Status> {
        let caller = Caller::from_request(&req)?;
        caller.require(TICKET_ROLES)?;
        let tenant = caller.tenant()?.to_owned();
        let r = req.into_inner();
        let size =
            wardline_kit::api::page_size(r.page_size, limits::DEFAULT_PAGE, limits::PAGE_SIZE)?;
        let mut filter = TicketFilter::default();
        wardline_kit::api::at_most("statuses", r.statuses.len(), limits::FILTER_VALUES)?;
        wardline_kit::api::at_most("priorities", r.priorities.len(), limits::FILTER_VALUES)?;
        if !r.assignee_analyst_id.is_empty()
            && !validate::is_display_text(&r.assignee_analyst_id, limits::ANALYST_ID)
        {
            return Err(Status::invalid_argument(format!(
                "assignee_analyst_id: 1-{} characters, no control characters",
                limits::ANALYST_ID
            )));
        }
        if !r.facility_id.is_empty() && !validate::is_slug(&r.facility_id, 1, limits::FACILITY_ID) {
            return Err(Status::invalid_argument(format!(
                "facility_id: 1-{} of [a-z0-9-], starting with a letter",
                limits::FACILITY_ID
            )));
        }
        for (i, s) in r.statuses.iter().enumerate() {
            let s: TicketStatus = enum_field(*s, &format!("statuses[{i}]"))?;
            filter.statuses.push(s as i16);
        }
        for (i, p) in r.priorities.iter().enumerate() {
            let p: wardline_proto::common::Priority = enum_field(*p, &format!("priorities[{i}]"))?;
            filter.priorities.push(p as i16);
        }
        filter.assignee = Some(r.assignee_analyst_id).filter(|a| !a.is_empty());
        filter.facility = Some(r.facility_id).filter(|f| !f.is_empty());
        if let Some(range) = &r.created {
            filter.created_from = match &range.start {
                Some(t) => Some(
                    from_timestamp(t)
                        .ok_or_else(|| Status::invalid_argument("created.start: out of range"))?,
                ),
                None => None,
            };
            filter.created_to = match &range.end {
                Some(t) => Some(
                    from_timestamp(t)
                        .ok_or_else(|| Status::invalid_argument("created.end: out of range"))?,
                ),
                None => None,
            };
        }
        if !r.page_token.is_empty() {
            filter.before = Some(Uuid::parse_str(&r.page_token).map_err(|_| {
                Status::invalid_argument("page_token: not a token from a previous response")
            })?);
        }
        // The list and its audit record in one transaction of the tenant.
        let mut tx = self.begin(Scope::Tenant(&tenant)).await?;
        let rows = storage::list_tickets(&mut tx, &tenant, owner(&caller), &filter, size + 1)
            .await
            .map_err(|e| db_status(&e))?;
        let more = rows.len() as i64 > size;
        let tickets: Vec<Ticket> = rows
            .iter()
            .take(size as usize)
            .map(convert::ticket)
            .collect();
        let next_page_token = if more {
            tickets
                .last()
                .map(|t| t.ticket_id.clone())
                .unwrap_or_default()
        } else {
            String::new()
        };
        let shown = tickets.iter().map(|t| t.ticket_id.clone()).collect();
        audit::record(&mut tx, &caller, &tenant, shown, "")
            .await
            .map_err(|e| db_status(&e))?;
        tx.commit().await.map_err(|e| db_status(&e))?;
        Ok(Response::new(ListTicketsResponse {
            tickets,
            next_page_token,
        }))
    }

    async fn acknowledge_ticket(
        &self,
        req: Request<AcknowledgeTicketRequest>,
    ) -> Result<Response<Ticket>, Status> {
        let caller = Caller::from_request(&req)?;
        let r = req.into_inner();
        self.change(
            caller,
            WORK_ROLES,
            &r,
            Box::new(|row, caller| {
                check_owner(row, caller)?;
                // An analyst may take an unassigned ticket directly (the one who
                // answered the phone), which is how first-contact resolution starts.
                if convert::status_of(row) == TicketStatus::New {
                    row.status = TicketStatus::Assigned as i16;
                    row.assignee_analyst_id = caller.subject.clone();
                    row.queued = false;
                }
                step(row, Action::Acknowledge)?;
                row.acknowledged_at = Some(Utc::now());
                Ok(Payload::TicketAcknowledged(TicketAcknowledged {
                    ticket: Some(convert::snapshot(row)),
                    analyst_id: row.assignee_analyst_id.clone(),
                }))
            }),
        )
        .await
    }

    async fn start_ticket(
        &self,
        req: Request<StartTicketRequest>,
    ) -> Result<Response<Ticket>, Status> {
        let caller = Caller::from_request(&req)?;
        let r = req.into_inner();
        self.change(
            caller,
            WORK_ROLES,
            &r,
            Box::new(|row, caller| {
                check_owner(row, caller)?;
                step(row, Action::Start)?;
                Ok(Payload::TicketStarted(TicketStarted {
                    ticket: Some(convert::snapshot(row)),
                    analyst_id: row.assignee_analyst_id.clone(),
                }))
            }),
        )
        .await
    }

    async fn hold_ticket(
        &self,
        req: Request<HoldTicketRequest>,
    ) -> Result<Response<Ticket>, Status> {
        let caller = Caller::from_request(&req)?;
        // Who may ask comes before what is asked (docs/authorization.md).
        caller.require(WORK_ROLES)?;
        let r = req.into_inner();
        let reason: HoldReason = enum_field(r.reason, "reason")?;
        if reason == HoldReason::Unspecified {
            return Err(Status::invalid_argument("reason: required"));
        }
        self.change(
            caller,
            WORK_ROLES,
            &r,
            Box::new(move |row, caller| {
                check_owner(row, caller)?;
                step(row, Action::Hold)?;
                Ok(Payload::TicketHeld(TicketHeld {
                    ticket: Some(convert::snapshot(row)),
                    reason: reason as i32,
                }))
            }),
        )
        .await
    }

    async fn resolve_ticket(
        &self,
        req: Request<ResolveTicketRequest>,
    ) -> Result<Response<Ticket>, Status> {
        let caller = Caller::from_request(&req)?;
        // Who may ask comes before what is asked (docs/authorization.md).
        caller.require(WORK_ROLES)?;
        let r = req.into_inner();
        let code: ResolutionCode = enum_field(r.resolution_code, "resolution_code")?;
        if code == ResolutionCode::Unspecified {
            return Err(Status::invalid_argument("resolution_code: required"));
        }
        let fcr = r.first_contact_resolution;
        self.change(
            caller,
            WORK_ROLES,
            &r,
            Box::new(move |row, caller| {
                check_owner(row, caller)?;
                step(row, Action::Resolve)?;
                let now = Utc::now();
                row.resolved_at = Some(now);
                row.acknowledged_at.get_or_insert(now);
                row.resolution_code = code as i16;
                row.first_contact_resolution = fcr;
                row.previous_analyst_id = row.assignee_analyst_id.clone();
                Ok(Payload::TicketResolved(TicketResolved {
                    ticket: Some(convert::snapshot(row)),
                    analyst_id: row.assignee_analyst_id.clone(),
                    resolution_code: code as i32,
                    first_contact_resolution: fcr,
                }))
            }),
        )
        .await
    }

    async fn close_ticket(
        &self,
        req: Request<CloseTicketRequest>,
    ) -> Result<Response<Ticket>, Status> {
        let caller = Caller::from_request(&req)?;
        let r = req.into_inner();
        self.change(
            caller,
            WORK_ROLES,
            &r,
            Box::new(|row, caller| {
                check_owner(row, caller)?;
                step(row, Action::Close)?;
                row.closed_at = Some(Utc::now());
                Ok(Payload::TicketClosed(TicketClosed {
                    ticket: Some(convert::snapshot(row)),
                }))
            }),
        )
        .await
    }

    async fn reopen_ticket(
        &self,
        req: Request<ReopenTicketRequest>,
    ) -> Result<Response<Ticket>, Status> {
        let caller = Caller::from_request(&req)?;
        let r = req.into_inner();
        let tenant = caller.tenant()?.to_owned();
        let mut conn = self.begin(Scope::Tenant(&tenant)).await?;
        let window = storage::get_tenant(&mut conn, &tenant)
            .await
            .map_err(|e| db_status(&e))?
            .map(|t| t.reopen_window_hours)
            .unwrap_or(72);
        drop(conn);
        self.change(
            caller,
            TICKET_ROLES,
            &r,
            Box::new(move |row, caller| {
                // A requester reaches only their own tickets (the lock
                // above is owner-scoped); an analyst reopens their own work.
                if caller.has_any(WORK_ROLES) {
                    check_owner(row, caller)?;
                }
                if let Some(resolved) = row.resolved_at
                    && convert::status_of(row) == TicketStatus::Resolved
                    && Utc::now() - resolved > chrono::Duration::hours(i64::from(window))
                {
                    return Err(Status::failed_precondition(format!(
                        "the reopen window of {window} hours has passed; create a new ticket"
                    )));
                }
                step(row, Action::Reopen)?;
                row.reopen_count += 1;
                row.assignee_analyst_id.clear();
                row.resolved_at = None;
                row.acknowledged_at = None;
                row.resolution_code = 0;
                row.first_contact_resolution = false;
                row.queued = false;
                Ok(Payload::TicketReopened(TicketReopened {
                    ticket: Some(convert::snapshot(row)),
                    previous_analyst_id: row.previous_analyst_id.clone(),
                }))
            }),
        )
        .await
    }

    async fn transfer_ticket(
        &self,
        req: Request<TransferTicketRequest>,
    ) -> Result<Response<Ticket>, Status> {
        let caller = Caller::from_request(&req)?;
        // Who may ask comes before what is asked (docs/authorization.md).
        caller.require(WORK_ROLES)?;
        let r = req.into_inner();
        let reason: TransferReason = enum_field(r.reason, "reason")?;
        if reason == TransferReason::Unspecified {
            return Err(Status::invalid_argument("reason: required"));
        }
        let category: Category = enum_field(r.category, "category")?;
        self.change(
            caller,
            WORK_ROLES,
            &r,
            Box::new(move |row, caller| {
                check_owner(row, caller)?;
                step(row, Action::Transfer)?;
                let from = std::mem::take(&mut row.assignee_analyst_id);
                row.previous_analyst_id = from.clone();
                row.acknowledged_at = None;
                if category != Category::Unspecified {
                    row.category = category as i16;
                    row.category_classified = false;
                }
                Ok(Payload::TicketTransferred(TicketTransferred {
                    ticket: Some(convert::snapshot(row)),
                    from_analyst_id: from,
                    reason: reason as i32,
                    category: row.category.into(),
                }))
            }),
        )
        .await
    }

    async fn add_note(&self, req: Request<AddNoteRequest>) -> Result<Response<Note>, Status> {
        let caller = Caller::from_request(&req)?;
        caller.require(TICKET_ROLES)?;
        let tenant = caller.tenant()?.to_owned();
        tracing::Span::current().record("tenant", tenant.as_str());
        let r = req.into_inner();
        require_request_id(&r.request_id)?;
        let id = parse_ticket_id(&r.ticket_id)?;
        if !validate::is_free_text(&r.body, limits::TEXT) {
            return Err(text_rule("body"));
        }
        let hash = idempotency::request_hash("AddNote", &r);
        let mut tx = self.begin(Scope::Tenant(&tenant)).await?;
        if let Claim::Replay(bytes) =
            idempotency::begin(&mut tx, &tenant, &r.request_id, "AddNote", &hash).await?
        {
            // Stored without its body (PHI stays in the note's row).
            let mut note: Note = decode_replay(&bytes)?.into_inner();
            let note_id = Uuid::parse_str(&note.note_id)
                .map_err(|_| Status::internal("stored response is unreadable"))?;
            note.body = storage::note_body(&mut tx, &tenant, owner(&caller), note_id)
                .await
                .map_err(|e| db_status(&e))?
                .ok_or_else(|| not_found(&r.ticket_id))?;
            tx.commit().await.map_err(|e| db_status(&e))?;
            return Ok(Response::new(note));
        }
        // A retry above is not a new note: the rate counts new ones.
        self.notes.quota.check(&tenant)?;
        let mut row =
            storage::get_ticket(&mut tx, &tenant, owner(&caller), TicketKey::Id(id), true)
                .await
                .map_err(|e| db_status(&e))?
                .ok_or_else(|| not_found(&r.ticket_id))?;
        record_ticket(&row);
        if convert::status_of(&row) == TicketStatus::Closed {
            return Err(Status::failed_precondition(
                "cannot add a note to a ticket that is closed",
            ));
        }
        // The ticket row is locked: the count cannot race another AddNote.
        let notes = storage::count_notes(&mut tx, &tenant, id)
            .await
            .map_err(|e| db_status(&e))?;
        if notes >= self.notes.max_per_ticket {
            return Err(Status::resource_exhausted(format!(
                "ticket {}: at most {} notes (INTAKE_MAX_NOTES_PER_TICKET)",
                row.number, self.notes.max_per_ticket
            )));
        }
        let note = NoteRow {
            note_id: Uuid::now_v7(),
            ticket_id: id,
            author_id: caller.subject.clone(),
            body: r.body.clone(),
            public: r.public,
            created_at: Utc::now(),
        };
        storage::insert_note(&mut tx, &tenant, &note)
            .await
            .map_err(|e| db_status(&e))?;
        row.version += 1;
        row.updated_at = note.created_at;
        storage::update_ticket(&mut tx, &row)
            .await
            .map_err(|e| db_status(&e))?;
        let env = envelope(
            "intake",
            &tenant,
            &row.ticket_id.to_string(),
            row.version as u64,
            Payload::TicketNoteAdded(TicketNoteAdded {
                ticket: Some(convert::snapshot(&row)),
                note_id: note.note_id.to_string(),
                author_id: note.author_id.clone(),
                public: note.public,
            }),
        );
        wardline_kit::outbox::enqueue(&mut tx, &env)
            .await
            .map_err(outbox_status)?;
        audit::record(
            &mut tx,
            &caller,
            &tenant,
            vec![row.ticket_id.to_string(), note.note_id.to_string()],
            &r.request_id,
        )
        .await
        .map_err(|e| db_status(&e))?;
        let resp = convert::note(&note);
        let stored = convert::stored_note(&resp).encode_to_vec();
        idempotency::finish(&mut tx, &tenant, &r.request_id, &stored)
            .await
            .map_err(|e| db_status(&e))?;
        tx.commit().await.map_err(|e| db_status(&e))?;
        Ok(Response::new(resp))
    }

    async fn list_notes(
        &self,
        req: Request<ListNotesRequest>,
    ) -> Result<Response<ListNotesResponse>, Status> {
        let caller = Caller::from_request(&req)?;
        caller.require(TICKET_ROLES)?;
        let tenant = caller.tenant()?.to_owned();
        let r = req.into_inner();
        let id = parse_ticket_id(&r.ticket_id)?;
        // The check, the page and its audit record in one transaction of
        // the tenant.
        let mut tx = self.begin(Scope::Tenant(&tenant)).await?;
        storage::get_ticket(&mut tx, &tenant, owner(&caller), TicketKey::Id(id), false)
            .await
            .map_err(|e| db_status(&e))?
            .ok_or_else(|| not_found(&r.ticket_id))?;
        let size = wardline_kit::api::page_size(
            r.page_size,
            limits::DEFAULT_NOTES_PAGE,
            limits::PAGE_SIZE,
        )?;
        let after = if r.page_token.is_empty() {
            Uuid::nil()
        } else {
            Uuid::parse_str(&r.page_token).map_err(|_| {
                Status::invalid_argument("page_token: not a token from a previous response")
            })?
        };
        // Requesters see what was written for them, not the analysts' working notes.
        let only_for = match owner(&caller) {
            Owner::Any => None,
            Owner::Subject(s) => Some(s),
        };
        let rows = storage::list_notes(&mut tx, &tenant, id, only_for, after, size + 1)
            .await
            .map_err(|e| db_status(&e))?;
        let (notes, next_page_token) =
            wardline_kit::api::page(rows, size, |n| n.note_id.to_string());
        audit::record(&mut tx, &caller, &tenant, vec![id.to_string()], "")
            .await
            .map_err(|e| db_status(&e))?;
        tx.commit().await.map_err(|e| db_status(&e))?;
        Ok(Response::new(ListNotesResponse {
            notes: notes.iter().map(convert::note).collect(),
            next_page_token,
        }))
    }
}

#[cfg(test)]
mod fuzz {
    //! Whatever a client sends, validation answers OK or INVALID_ARGUMENT
    //! naming a field, never panics, and lets nothing through that
    //! PostgreSQL would refuse (a NUL byte) or that is over its limit.
    use proptest::prelude::*;

    use super::*;

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            ".{0,40}",
            "[a-z0-9@.+-]{0,40}",
            Just(String::new()),
            Just("\u{0}".to_owned()),
            Just("a\u{0}b".to_owned()),
            Just("x".repeat(10_001)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn create_requests_are_answered_by_field(
            request_id in text(), facility in text(), caller_id in text(), name in text(),
            email in text(), phone in text(), application in text(), description in text(),
            role in -2i32..12, channel in -2i32..12, urgency in -2i32..12, impact in -2i32..12,
            category in -2i32..40, with_caller in any::<bool>(),
        ) {
            let r = CreateTicketRequest {
                request_id,
                facility_id: facility,
                caller: with_caller.then_some(wardline_proto::intake::Caller {
                    caller_id, name, role, email, phone,
                }),
                channel,
                application,
                urgency,
                impact,
                category,
                description,
                ..Default::default()
            };
            match validate_create(&r, "stmarys") {
                Ok(row) => {
                    let all = [&row.description, &row.caller_name, &row.caller_email,
                        &row.caller_phone, &row.caller_id, &row.facility_id, &row.application];
                    prop_assert!(all.iter().all(|s| !s.contains('\0')));
                    prop_assert!(row.description.chars().count() <= limits::TEXT);
                }
                Err(s) => {
                    prop_assert_eq!(s.code(), tonic::Code::InvalidArgument);
                    let field = s.message().split(':').next().unwrap_or_default().to_owned();
                    prop_assert!(!field.is_empty() && !field.contains(' '), "{}", s.message());
                }
            }
        }
    }
}
