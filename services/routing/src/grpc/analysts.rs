//! AnalystService: the analyst directory.
//!
//! Who may do what (the rpc comments of `routing.proto`):
//! - a vendor admin (all-tenants token) reaches every analyst;
//! - a tenant admin reads analysts covering their tenant (directly or
//!   through `"*"`) and manages only those covering nothing but their
//!   tenant (PERMISSION_DENIED for the others they can see);
//! - an analyst reads analysts covering their tenant and sets their own
//!   availability (token subject = id);
//! - anything outside the caller's reach is NOT_FOUND, like a missing id.
//!
//! Subjects are not tenant-qualified (two hospitals' identity providers may
//! both issue `jsmith`), so "subject = id" makes someone themselves only on
//! an all-tenants token or where the analyst covers the token's tenant. A
//! tenant's callers see an analyst shared with other tenants through their
//! own tenant only: coverage of other tenants and the vendor's staff
//! contacts are left out ([`directory::Audience`]).
//!
//! Every change publishes a directory event per covered tenant (before and
//! after the change, so a tenant the analyst stopped covering hears it
//! too), with the analyst's version as the aggregate version. An analyst
//! covering every tenant (`"*"`) is announced under [`ALL_TENANTS_EVENT`].

use chrono::Utc;
use prost::Message;
use tonic::{Request, Response, Status};
use wardline_kit::audit;
use wardline_kit::auth::{Caller, Role};
use wardline_kit::db::Scope;
use wardline_kit::events::envelope;
use wardline_kit::grpc::db_status;
use wardline_kit::idempotency::{self, Claim};
use wardline_kit::validate;
use wardline_proto::events::event_envelope::Payload;
use wardline_proto::events::{
    AnalystAvailabilityChanged, AnalystUpserted, Availability, EventEnvelope,
};
use wardline_proto::routing as pb;
use wardline_proto::routing::analyst_service_server::AnalystService;
use wardline_proto::routing::{
    Analyst, GetAnalystRequest, ListAnalystsRequest, ListAnalystsResponse, SetAvailabilityRequest,
    SetShiftsRequest, UpsertAnalystRequest,
};

use super::{Api, decode_replay, outbox_status, require_request_id};
use crate::directory::{self, ALL_TENANTS, AnalystFilter, AnalystRow, Coverage, SkillRow};
use crate::domain::shift::{Shift, on_shift, parse_hhmm};
use crate::limits;
use crate::policy::{credential_from_proto, module_from_proto};

/// The scope of every transaction on the analyst directory: every
/// tenant's rows. The directory is the vendor's, shared by tenants, and
/// what a tenant's caller may see or change of an analyst depends on the
/// analyst's coverage elsewhere: contacts of staff shared with other
/// tenants are hidden and a tenant admin changes only analysts covering
/// their tenant alone (`covers_only`), which a tenant-scoped transaction
/// could not tell (it sees its own coverage rows only). The handlers'
/// reach (`Reach::sees`, `check_manage`, `directory::to_proto`'s audience)
/// decides what leaves, as before; changes' events go to every tenant
/// covered. The engine's reads of coverage run in the batch's tenant.
const DIRECTORY: Scope<'static> = Scope::AllTenants;

/// Roles that read the directory.
const READERS: &[Role] = &[Role::VendorAdmin, Role::TenantAdmin, Role::Analyst];
/// Roles that change it.
const MANAGERS: &[Role] = &[Role::VendorAdmin, Role::TenantAdmin];
/// Envelope tenant of directory events about analysts covering every tenant.
pub use wardline_kit::events::ALL_TENANTS_EVENT;
/// Idempotency scope of vendor calls that name no tenant (as in intake).
const VENDOR_SCOPE: &str = "_vendor";
const PRODUCER: &str = "routing";

use crate::limits::{
    COVERAGE as MAX_COVERAGE, FACILITIES as MAX_FACILITIES, LANGUAGES as MAX_LANGUAGES,
    SHIFTS as MAX_SHIFTS,
};

fn invalid(msg: impl Into<String>) -> Status {
    Status::invalid_argument(msg.into())
}

fn not_found(id: &str) -> Status {
    Status::not_found(format!("analyst {id} not found"))
}

fn manage_denied(tenant: &str) -> Status {
    Status::permission_denied(format!(
        "a tenant_admin may only manage analysts that cover nothing but tenant {tenant}"
    ))
}

/// 1-64 of `[a-z0-9._-]` (equals the subject of the analyst's token).
pub(crate) fn is_analyst_id(s: &str) -> bool {
    (1..=limits::ANALYST_ID).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
}

fn check_analyst_id(id: &str, field: &str) -> Result<(), Status> {
    if id.is_empty() {
        Err(invalid(format!("{field}: required")))
    } else if !is_analyst_id(id) {
        Err(invalid(format!(
            "{field}: 1-{} of [a-z0-9._-]",
            limits::ANALYST_ID
        )))
    } else {
        Ok(())
    }
}

/// A BCP-47-like tag: a 2-8 letter language, then `-`-separated subtags of
/// 1-8 letters or digits ("en", "es-MX", "zh-Hant-TW").
fn is_language_tag(s: &str) -> bool {
    let mut parts = s.split('-');
    let primary = parts.next().unwrap_or_default();
    s.len() <= 35
        && (2..=8).contains(&primary.len())
        && primary.chars().all(|c| c.is_ascii_alphabetic())
        && parts.all(|p| (1..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// Checks weekly shifts; errors name `field[i]`.
fn validate_shifts(shifts: &[pb::Shift], field: &str) -> Result<Vec<Shift>, Status> {
    if shifts.len() > MAX_SHIFTS {
        return Err(invalid(format!("{field}: at most {MAX_SHIFTS} shifts")));
    }
    shifts
        .iter()
        .enumerate()
        .map(|(i, s)| -> Result<Shift, Status> {
            let day = u8::try_from(s.day_of_week)
                .ok()
                .filter(|d| (1..=7).contains(d))
                .ok_or_else(|| invalid(format!("{field}[{i}].day_of_week: 1-7 (Monday-Sunday)")))?;
            let start = parse_hhmm(&s.start)
                .ok_or_else(|| invalid(format!("{field}[{i}].start: \"HH:MM\" (00:00-23:59)")))?;
            let end = parse_hhmm(&s.end)
                .ok_or_else(|| invalid(format!("{field}[{i}].end: \"HH:MM\" (00:00-23:59)")))?;
            if start == end {
                return Err(invalid(format!("{field}[{i}].end: must differ from start")));
            }
            Ok(Shift {
                day,
                start_minute: start,
                end_minute: end,
            })
        })
        .collect()
}

fn validate_coverage(coverage: &[pb::TenantCoverage]) -> Result<Vec<Coverage>, Status> {
    if coverage.is_empty() {
        return Err(invalid("analyst.coverage: at least one tenant"));
    }
    if coverage.len() > MAX_COVERAGE {
        return Err(invalid(format!(
            "analyst.coverage: at most {MAX_COVERAGE} tenants"
        )));
    }
    let mut out: Vec<Coverage> = Vec::with_capacity(coverage.len());
    for (i, c) in coverage.iter().enumerate() {
        let field = format!("analyst.coverage[{i}]");
        let all = c.tenant_id == ALL_TENANTS;
        if !all && !validate::is_slug(&c.tenant_id, 2, limits::TENANT_ID) {
            return Err(invalid(format!(
                "{field}.tenant_id: a tenant slug (2-{} of [a-z0-9-], starting with a letter) or \"*\"",
                limits::TENANT_ID
            )));
        }
        if out.iter().any(|o| o.tenant_id == c.tenant_id) {
            return Err(invalid(format!("{field}.tenant_id: duplicate")));
        }
        if all && !c.facility_ids.is_empty() {
            return Err(invalid(format!(
                "{field}.facility_ids: must be empty when tenant_id is \"*\""
            )));
        }
        if c.facility_ids.len() > MAX_FACILITIES {
            return Err(invalid(format!(
                "{field}.facility_ids: at most {MAX_FACILITIES}"
            )));
        }
        let mut facilities: Vec<String> = Vec::with_capacity(c.facility_ids.len());
        for (j, f) in c.facility_ids.iter().enumerate() {
            if !validate::is_slug(f, 1, limits::FACILITY_ID) {
                return Err(invalid(format!(
                    "{field}.facility_ids[{j}]: 1-{} of [a-z0-9-], starting with a letter",
                    limits::FACILITY_ID
                )));
            }
            if facilities.contains(f) {
                return Err(invalid(format!("{field}.facility_ids[{j}]: duplicate")));
            }
            facilities.push(f.clone());
        }
        out.push(Coverage {
            tenant_id: c.tenant_id.clone(),
            facility_ids: facilities,
        });
    }
    Ok(out)
}

/// Checks an analyst to create or replace; errors name `analyst.<field>`.
/// Output-only fields are ignored; availability is used on create only.
fn validate_analyst(a: &pb::Analyst) -> Result<AnalystRow, Status> {
    check_analyst_id(&a.analyst_id, "analyst.analyst_id")?;
    check_contacts(a)?;
    let coverage = validate_coverage(&a.coverage)?;
    let skills = validate_skills(&a.skills)?;
    let credentials = validate_credentials(&a.credentials)?;
    let languages = validate_languages(&a.languages)?;
    if !(1..=limits::MAX_CONCURRENT_TICKETS).contains(&a.max_concurrent_tickets) {
        return Err(invalid(format!(
            "analyst.max_concurrent_tickets: 1-{}",
            limits::MAX_CONCURRENT_TICKETS
        )));
    }
    let shifts = validate_shifts(&a.shifts, "analyst.shifts")?;
    let availability = initial_availability(a.availability)?;
    let now = Utc::now();
    Ok(AnalystRow {
        analyst_id: a.analyst_id.clone(),
        name: a.name.trim().to_owned(),
        email: a.email.clone(),
        phone: a.phone.clone(),
        pager: a.pager.clone(),
        time_zone: a.time_zone.clone(),
        coverage,
        skills,
        credentials,
        languages,
        max_concurrent: a.max_concurrent_tickets as i32,
        shifts,
        availability: availability as i16,
        supervisor: a.supervisor,
        tier2: a.tier2,
        on_call: a.on_call,
        current_load: 0,
        idle_since: now,
        version: 0,
        created_at: now,
        updated_at: now,
    })
}

/// The analyst's name and how to reach them: a name, optional email, phone
/// (E.164) and pager, and the IANA time zone their shifts are in.
fn check_contacts(a: &pb::Analyst) -> Result<(), Status> {
    if !validate::is_display_text(&a.name, limits::NAME) {
        return Err(invalid(format!(
            "analyst.name: 1-{} characters, no control characters",
            limits::NAME
        )));
    }
    if !a.email.is_empty() && !validate::is_email(&a.email) {
        return Err(invalid("analyst.email: not an email address"));
    }
    if !a.phone.is_empty() && !validate::is_e164(&a.phone) {
        return Err(invalid("analyst.phone: E.164 format, e.g. +13125550100"));
    }
    if !a.pager.is_empty() && !validate::is_display_text(&a.pager, limits::PAGER) {
        return Err(invalid(format!(
            "analyst.pager: at most {} characters, no control characters",
            limits::PAGER
        )));
    }
    if a.time_zone.parse::<chrono_tz::Tz>().is_err() {
        return Err(invalid(
            "analyst.time_zone: not an IANA time zone (e.g. America/Chicago)",
        ));
    }
    Ok(())
}

/// Skills: a known module at level 1-5, each module once.
fn validate_skills(skills: &[pb::Skill]) -> Result<Vec<SkillRow>, Status> {
    let mut out: Vec<SkillRow> = Vec::with_capacity(skills.len());
    for (i, s) in skills.iter().enumerate() {
        let module =
            module_from_proto(s.module, &format!("analyst.skills[{i}].module")).map_err(invalid)?;
        if !(1..=5).contains(&s.level) {
            return Err(invalid(format!("analyst.skills[{i}].level: 1-5")));
        }
        if out.iter().any(|k| k.module == module as i16) {
            return Err(invalid(format!("analyst.skills[{i}].module: duplicate")));
        }
        out.push(SkillRow {
            module: module as i16,
            level: s.level as i16,
        });
    }
    Ok(out)
}

/// Credentials: known values, each once.
fn validate_credentials(credentials: &[i32]) -> Result<Vec<i16>, Status> {
    let mut out: Vec<i16> = Vec::with_capacity(credentials.len());
    for (i, c) in credentials.iter().enumerate() {
        let c = credential_from_proto(*c, &format!("analyst.credentials[{i}]")).map_err(invalid)?
            as i16;
        if out.contains(&c) {
            return Err(invalid(format!("analyst.credentials[{i}]: duplicate")));
        }
        out.push(c);
    }
    Ok(out)
}

/// Languages: at most [`MAX_LANGUAGES`] BCP-47 tags, each once (ignoring case).
fn validate_languages(languages: &[String]) -> Result<Vec<String>, Status> {
    if languages.len() > MAX_LANGUAGES {
        return Err(invalid(format!(
            "analyst.languages: at most {MAX_LANGUAGES}"
        )));
    }
    let mut out: Vec<String> = Vec::with_capacity(languages.len());
    for (i, l) in languages.iter().enumerate() {
        if !is_language_tag(l) {
            return Err(invalid(format!(
                "analyst.languages[{i}]: a BCP-47 language tag, e.g. en or es-MX"
            )));
        }
        if out.iter().any(|x| x.eq_ignore_ascii_case(l)) {
            return Err(invalid(format!("analyst.languages[{i}]: duplicate")));
        }
        out.push(l.clone());
    }
    Ok(out)
}

/// The availability a new analyst starts with: offline unless stated.
fn initial_availability(value: i32) -> Result<Availability, Status> {
    match Availability::try_from(value) {
        Ok(Availability::Unspecified) => Ok(Availability::Offline),
        Ok(v) => Ok(v),
        Err(_) => Err(invalid(format!(
            "analyst.availability: unknown value {value}"
        ))),
    }
}

/// The availability SetAvailability asks for: one of the four states.
fn requested_availability(value: i32) -> Result<Availability, Status> {
    match Availability::try_from(value) {
        Ok(Availability::Unspecified) => Err(invalid(
            "availability: required (available, busy, away or offline)",
        )),
        Ok(a) => Ok(a),
        Err(_) => Err(invalid(format!("availability: unknown value {value}"))),
    }
}

/// Whose availability SetAvailability sets: the analyst named, or the
/// caller themselves when none is.
fn availability_target(caller: &Caller, analyst_id: &str) -> Result<String, Status> {
    if analyst_id.is_empty() {
        return Ok(caller.subject.clone());
    }
    check_analyst_id(analyst_id, "analyst_id")?;
    Ok(analyst_id.to_owned())
}

/// How far the caller reaches when setting `id`'s availability: a directory
/// reader setting their own, or a manager setting anyone's they manage.
/// Asked after the role check, an id no analyst can have (a caller whose
/// subject is not an analyst id, asking for themselves) is NOT_FOUND.
fn availability_reach(caller: &Caller, id: &str) -> Result<Reach, Status> {
    let own = id == caller.subject && caller.has_any(READERS);
    let reach = if own {
        own_reach(caller)?
    } else {
        caller.require(MANAGERS)?;
        reach(caller)?
    };
    if !is_analyst_id(id) {
        return Err(not_found(id));
    }
    Ok(reach)
}

/// How far a caller reaches in the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reach {
    /// A vendor admin: every analyst.
    Everything,
    /// Analysts covering this tenant (directly or through `"*"`).
    Tenant(String),
    /// The caller themselves, seen from this tenant: only if they cover it.
    Own(String),
}

impl Reach {
    /// How an analyst in reach is shown.
    fn audience(&self) -> directory::Audience<'_> {
        match self {
            Reach::Tenant(t) => directory::Audience::Tenant(t),
            Reach::Everything | Reach::Own(_) => directory::Audience::Everything,
        }
    }

    /// Is the existing analyst `a` visible at all? Analysts outside the
    /// caller's tenant do not exist for them.
    fn sees(&self, a: &AnalystRow) -> bool {
        match self {
            Reach::Everything => true,
            Reach::Tenant(t) | Reach::Own(t) => a.covers(t),
        }
    }
}

fn reach(caller: &Caller) -> Result<Reach, Status> {
    if caller.all_tenants && caller.has_any(&[Role::VendorAdmin]) {
        Ok(Reach::Everything)
    } else {
        Ok(Reach::Tenant(caller.tenant()?.to_owned()))
    }
}

/// The reach of a caller acting on their own record (subject = id).
fn own_reach(caller: &Caller) -> Result<Reach, Status> {
    if caller.all_tenants {
        Ok(Reach::Everything)
    } else {
        Ok(Reach::Own(caller.tenant()?.to_owned()))
    }
}

/// May a caller with `reach` change the existing analyst `a`? A tenant
/// admin sees analysts shared with other tenants but may not change them;
/// analysts outside their tenant do not exist for them.
fn check_manage(reach: &Reach, a: &AnalystRow) -> Result<(), Status> {
    match reach {
        Reach::Everything => Ok(()),
        Reach::Own(t) if a.covers(t) => Ok(()),
        Reach::Tenant(t) if a.covers_only(t) => Ok(()),
        Reach::Tenant(t) if a.covers(t) => Err(manage_denied(t)),
        Reach::Tenant(_) | Reach::Own(_) => Err(not_found(&a.analyst_id)),
    }
}

/// The idempotency scope of a caller's keys.
fn key_scope(caller: &Caller) -> &str {
    caller.tenant.as_deref().unwrap_or(VENDOR_SCOPE)
}

/// The tenants a change to analysts `rows` (before and after it) is on
/// record under: a pinned caller's tenant; for the vendor, every tenant
/// the analyst covers (so each hospital's admins see who changed the
/// people serving it), or the vendor's own trail if that is none (only
/// `"*"`).
fn audit_tenants<'a>(
    caller: &Caller,
    rows: impl IntoIterator<Item = &'a AnalystRow>,
) -> Vec<String> {
    if !caller.all_tenants
        && let Some(t) = &caller.tenant
    {
        return vec![t.clone()];
    }
    let mut tenants: Vec<String> = rows
        .into_iter()
        .flat_map(|a| a.coverage.iter())
        .filter(|c| c.tenant_id != ALL_TENANTS)
        .map(|c| c.tenant_id.clone())
        .collect();
    tenants.sort();
    tenants.dedup();
    if tenants.is_empty() {
        tenants.push(VENDOR_SCOPE.to_owned());
    }
    tenants
}

/// Puts a change to analyst `a` on record, in the change's transaction.
async fn record_change(
    tx: &mut sqlx::PgConnection,
    caller: &Caller,
    tenants: &[String],
    a: &AnalystRow,
    request_id: &str,
) -> Result<(), Status> {
    let entries: Vec<audit::Entry> = tenants
        .iter()
        .map(|t| audit::Entry::new(caller, t, vec![a.analyst_id.clone()], request_id))
        .collect();
    audit::append(tx, &entries).await.map_err(|e| db_status(&e))
}

/// Envelope tenants of a directory event about analysts `rows` (the
/// analyst before and after a change), each once, `"*"` as [`ALL_TENANTS_EVENT`].
fn event_tenants<'a>(rows: impl IntoIterator<Item = &'a AnalystRow>) -> Vec<String> {
    let mut tenants: Vec<String> = rows
        .into_iter()
        .flat_map(|a| a.coverage.iter())
        .map(|c| {
            if c.tenant_id == ALL_TENANTS {
                ALL_TENANTS_EVENT.to_owned()
            } else {
                c.tenant_id.clone()
            }
        })
        .collect();
    tenants.sort();
    tenants.dedup();
    tenants
}

fn events(tenants: &[String], a: &AnalystRow, payload: impl Fn() -> Payload) -> Vec<EventEnvelope> {
    tenants
        .iter()
        .map(|t| envelope(PRODUCER, t, &a.analyst_id, a.version as u64, payload()))
        .collect()
}

fn check_version(expected: u64, a: &AnalystRow) -> Result<(), Status> {
    if expected != 0 && expected != a.version as u64 {
        return Err(Status::aborted(format!(
            "expected_version: the analyst is at version {}, not {expected}",
            a.version
        )));
    }
    Ok(())
}

fn page_size(n: u32) -> Result<i64, Status> {
    Ok(wardline_kit::api::page_size(
        n,
        limits::DEFAULT_PAGE,
        limits::PAGE_SIZE,
    )?)
}

/// The filter of a listing request (without tenant and cursor).
fn list_filter(r: &ListAnalystsRequest) -> Result<AnalystFilter, Status> {
    let mut f = AnalystFilter::default();
    for (i, v) in r.availabilities.iter().enumerate() {
        match Availability::try_from(*v) {
            Ok(Availability::Unspecified) | Err(_) => {
                return Err(invalid(format!(
                    "availabilities[{i}]: available, busy, away or offline"
                )));
            }
            Ok(a) => f.availabilities.push(a as i16),
        }
    }
    if r.skill_module != 0 {
        f.skill_module =
            Some(module_from_proto(r.skill_module, "skill_module").map_err(invalid)? as i16);
    }
    if r.min_skill_level > 5 {
        return Err(invalid("min_skill_level: 0-5"));
    }
    f.min_skill_level = r.min_skill_level as i16;
    if r.credential != 0 {
        f.credential =
            Some(credential_from_proto(r.credential, "credential").map_err(invalid)? as i16);
    }
    f.supervisors_only = r.supervisors_only;
    if !r.page_token.is_empty() {
        if !is_analyst_id(&r.page_token) {
            return Err(invalid("page_token: not a token from a previous response"));
        }
        f.after = Some(r.page_token.clone());
    }
    Ok(f)
}

#[tonic::async_trait]
impl AnalystService for Api {
    async fn upsert_analyst(
        &self,
        req: Request<UpsertAnalystRequest>,
    ) -> Result<Response<Analyst>, Status> {
        let caller = Caller::from_request(&req)?;
        caller.require(MANAGERS)?;
        let reach = reach(&caller)?;
        let r = req.into_inner();
        require_request_id(&r.request_id)?;
        let given = r
            .analyst
            .as_ref()
            .ok_or_else(|| invalid("analyst: required"))?;
        let mut row = validate_analyst(given)?;
        tracing::Span::current().record("analyst_id", row.analyst_id.as_str());
        if let Reach::Tenant(t) = &reach
            && !row.covers_only(t)
        {
            return Err(manage_denied(t));
        }
        let scope = key_scope(&caller).to_owned();
        let hash = idempotency::request_hash("UpsertAnalyst", &r);
        // Every tenant's rows: see [`DIRECTORY`].
        let mut tx = self.begin(DIRECTORY).await?;
        if let Claim::Replay(bytes) =
            idempotency::begin(&mut tx, &scope, &r.request_id, "UpsertAnalyst", &hash).await?
        {
            return decode_replay(&bytes);
        }
        let before = directory::lock_analyst(&mut tx, &row.analyst_id)
            .await
            .map_err(|e| db_status(&e))?;
        if let Some(b) = &before {
            if let Reach::Tenant(t) = &reach
                && !b.covers_only(t)
            {
                // An id in use outside the tenant is only "taken": the
                // refusal names no tenant and nothing about the analyst.
                return Err(if b.covers(t) {
                    manage_denied(t)
                } else {
                    Status::already_exists("analyst.analyst_id: already taken; choose another id")
                });
            }
            check_version(r.expected_version, b)?;
            row.availability = b.availability;
        }
        let version = directory::upsert_analyst(&mut tx, &row)
            .await
            .map_err(|e| db_status(&e))?;
        if before.is_none() && version != 1 {
            // Created by a concurrent request after our read: the checks
            // above did not see it. Roll back; a retry sees it.
            return Err(Status::aborted(
                "concurrent update; retry with the same request_id",
            ));
        }
        let after = directory::get_analyst(&mut tx, &row.analyst_id)
            .await
            .map_err(|e| db_status(&e))?
            .ok_or_else(|| not_found(&row.analyst_id))?;
        let info = directory::analyst_info(&after);
        let envs = events(
            &event_tenants(before.iter().chain([&after])),
            &after,
            || {
                Payload::AnalystUpserted(AnalystUpserted {
                    analyst: Some(info.clone()),
                })
            },
        );
        wardline_kit::outbox::enqueue_many(&mut tx, &envs)
            .await
            .map_err(outbox_status)?;
        let tenants = audit_tenants(&caller, before.iter().chain([&after]));
        record_change(&mut tx, &caller, &tenants, &after, &r.request_id).await?;
        let resp = directory::to_proto(&after, Utc::now(), reach.audience());
        idempotency::finish(&mut tx, &scope, &r.request_id, &resp.encode_to_vec())
            .await
            .map_err(|e| db_status(&e))?;
        tx.commit().await.map_err(|e| db_status(&e))?;
        // New capacity, skills, coverage or shifts may fit queued tickets.
        self.wake.notify_one();
        tracing::info!(analyst_id = %after.analyst_id, version = after.version, created = before.is_none(), "analyst upserted");
        Ok(Response::new(resp))
    }

    async fn get_analyst(
        &self,
        req: Request<GetAnalystRequest>,
    ) -> Result<Response<Analyst>, Status> {
        let caller = Caller::from_request(&req)?;
        caller.require(READERS)?;
        let r = req.into_inner();
        let id = if r.analyst_id.is_empty() {
            caller.subject.clone()
        } else {
            check_analyst_id(&r.analyst_id, "analyst_id")?;
            r.analyst_id
        };
        tracing::Span::current().record("analyst_id", id.as_str());
        if !is_analyst_id(&id) {
            // A subject that cannot be an analyst id.
            return Err(not_found(&id));
        }
        let reach = if id == caller.subject {
            own_reach(&caller)?
        } else {
            reach(&caller)?
        };
        // Every tenant's rows: see [`DIRECTORY`].
        let mut tx = self.begin(DIRECTORY).await?;
        let row = directory::get_analyst(&mut tx, &id)
            .await
            .map_err(|e| db_status(&e))?
            .filter(|row| reach.sees(row))
            .ok_or_else(|| not_found(&id))?;
        tx.commit().await.map_err(|e| db_status(&e))?;
        Ok(Response::new(directory::to_proto(
            &row,
            Utc::now(),
            reach.audience(),
        )))
    }

    async fn list_analysts(
        &self,
        req: Request<ListAnalystsRequest>,
    ) -> Result<Response<ListAnalystsResponse>, Status> {
        let caller = Caller::from_request(&req)?;
        caller.require(READERS)?;
        let r = req.into_inner();
        let size = page_size(r.page_size)?;
        let mut filter = list_filter(&r)?;
        let reach = reach(&caller)?;
        filter.tenant = match &reach {
            Reach::Everything if !r.tenant_id.is_empty() => {
                if !validate::is_slug(&r.tenant_id, 2, limits::TENANT_ID) {
                    return Err(invalid(format!(
                        "tenant_id: 2-{} of [a-z0-9-], starting with a letter",
                        limits::TENANT_ID
                    )));
                }
                Some(r.tenant_id.clone())
            }
            Reach::Everything => caller.tenant.clone(),
            Reach::Tenant(t) | Reach::Own(t) => {
                if !r.tenant_id.is_empty() && r.tenant_id != *t {
                    return Err(Status::not_found(format!(
                        "tenant {} not found",
                        r.tenant_id
                    )));
                }
                Some(t.clone())
            }
        };
        if let Some(t) = &filter.tenant {
            tracing::Span::current().record("tenant", t.as_str());
        }
        // Whether someone is on shift depends on their time zone, so that
        // filter runs here, reading further batches until the page is full.
        let now = Utc::now();
        let batch = if r.on_shift_only {
            (size + 1).max(500)
        } else {
            size + 1
        };
        let mut page: Vec<AnalystRow> = Vec::new();
        // Every tenant's rows: see [`DIRECTORY`].
        let mut tx = self.begin(DIRECTORY).await?;
        loop {
            let rows = directory::list_analysts(&mut tx, &filter, batch)
                .await
                .map_err(|e| db_status(&e))?;
            let exhausted = (rows.len() as i64) < batch;
            for row in rows {
                filter.after = Some(row.analyst_id.clone());
                if !r.on_shift_only || on_shift(&row.shifts, row.tz(), now) {
                    page.push(row);
                    if page.len() as i64 > size {
                        break;
                    }
                }
            }
            if exhausted || page.len() as i64 > size {
                break;
            }
        }
        tx.commit().await.map_err(|e| db_status(&e))?;
        let more = page.len() as i64 > size;
        page.truncate(size as usize);
        let next_page_token = if more {
            page.last()
                .map(|a| a.analyst_id.clone())
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(ListAnalystsResponse {
            analysts: page
                .iter()
                .map(|a| directory::to_proto(a, now, reach.audience()))
                .collect(),
            next_page_token,
        }))
    }

    async fn set_availability(
        &self,
        req: Request<SetAvailabilityRequest>,
    ) -> Result<Response<Analyst>, Status> {
        let caller = Caller::from_request(&req)?;
        // Who may ask comes before what is asked: only directory readers
        // (themselves) and managers (others) get further.
        caller.require(READERS)?;
        let r = req.into_inner();
        require_request_id(&r.request_id)?;
        let availability = requested_availability(r.availability)?;
        let id = availability_target(&caller, &r.analyst_id)?;
        tracing::Span::current().record("analyst_id", id.as_str());
        let reach = availability_reach(&caller, &id)?;
        // "Myself" is resolved before hashing, so two analysts' identical
        // requests can never replay each other's answers.
        let normalized = SetAvailabilityRequest {
            analyst_id: id.clone(),
            ..r.clone()
        };
        let scope = key_scope(&caller).to_owned();
        let hash = idempotency::request_hash("SetAvailability", &normalized);
        // Every tenant's rows: see [`DIRECTORY`].
        let mut tx = self.begin(DIRECTORY).await?;
        if let Claim::Replay(bytes) =
            idempotency::begin(&mut tx, &scope, &r.request_id, "SetAvailability", &hash).await?
        {
            return decode_replay(&bytes);
        }
        let before = directory::lock_analyst(&mut tx, &id)
            .await
            .map_err(|e| db_status(&e))?
            .ok_or_else(|| not_found(&id))?;
        check_manage(&reach, &before)?;
        check_version(r.expected_version, &before)?;
        let became_available =
            availability == Availability::Available && before.availability() != availability;
        let after = if before.availability() == availability {
            // Nothing changes: no new version, no event.
            before
        } else {
            let after = directory::set_availability(&mut tx, &id, availability)
                .await
                .map_err(|e| db_status(&e))?
                .ok_or_else(|| not_found(&id))?;
            let envs = events(&event_tenants([&after]), &after, || {
                Payload::AnalystAvailabilityChanged(AnalystAvailabilityChanged {
                    analyst_id: after.analyst_id.clone(),
                    availability: availability as i32,
                })
            });
            wardline_kit::outbox::enqueue_many(&mut tx, &envs)
                .await
                .map_err(outbox_status)?;
            after
        };
        let tenants = audit_tenants(&caller, [&after]);
        record_change(&mut tx, &caller, &tenants, &after, &r.request_id).await?;
        let resp = directory::to_proto(&after, Utc::now(), reach.audience());
        idempotency::finish(&mut tx, &scope, &r.request_id, &resp.encode_to_vec())
            .await
            .map_err(|e| db_status(&e))?;
        tx.commit().await.map_err(|e| db_status(&e))?;
        if became_available {
            self.wake.notify_one();
        }
        tracing::info!(analyst_id = %after.analyst_id, availability = availability.as_str_name(), version = after.version, "analyst availability set");
        Ok(Response::new(resp))
    }

    async fn set_shifts(
        &self,
        req: Request<SetShiftsRequest>,
    ) -> Result<Response<Analyst>, Status> {
        let caller = Caller::from_request(&req)?;
        caller.require(MANAGERS)?;
        let reach = reach(&caller)?;
        let r = req.into_inner();
        require_request_id(&r.request_id)?;
        check_analyst_id(&r.analyst_id, "analyst_id")?;
        tracing::Span::current().record("analyst_id", r.analyst_id.as_str());
        let shifts = validate_shifts(&r.shifts, "shifts")?;
        let scope = key_scope(&caller).to_owned();
        let hash = idempotency::request_hash("SetShifts", &r);
        // Every tenant's rows: see [`DIRECTORY`].
        let mut tx = self.begin(DIRECTORY).await?;
        if let Claim::Replay(bytes) =
            idempotency::begin(&mut tx, &scope, &r.request_id, "SetShifts", &hash).await?
        {
            return decode_replay(&bytes);
        }
        let before = directory::lock_analyst(&mut tx, &r.analyst_id)
            .await
            .map_err(|e| db_status(&e))?
            .ok_or_else(|| not_found(&r.analyst_id))?;
        check_manage(&reach, &before)?;
        check_version(r.expected_version, &before)?;
        directory::set_shifts(&mut tx, &r.analyst_id, &shifts)
            .await
            .map_err(|e| db_status(&e))?
            .ok_or_else(|| not_found(&r.analyst_id))?;
        let after = directory::get_analyst(&mut tx, &r.analyst_id)
            .await
            .map_err(|e| db_status(&e))?
            .ok_or_else(|| not_found(&r.analyst_id))?;
        let info = directory::analyst_info(&after);
        let envs = events(&event_tenants([&after]), &after, || {
            Payload::AnalystUpserted(AnalystUpserted {
                analyst: Some(info.clone()),
            })
        });
        wardline_kit::outbox::enqueue_many(&mut tx, &envs)
            .await
            .map_err(outbox_status)?;
        let tenants = audit_tenants(&caller, [&after]);
        record_change(&mut tx, &caller, &tenants, &after, &r.request_id).await?;
        let resp = directory::to_proto(&after, Utc::now(), reach.audience());
        idempotency::finish(&mut tx, &scope, &r.request_id, &resp.encode_to_vec())
            .await
            .map_err(|e| db_status(&e))?;
        tx.commit().await.map_err(|e| db_status(&e))?;
        // Someone may be on shift now who was not.
        self.wake.notify_one();
        tracing::info!(analyst_id = %after.analyst_id, version = after.version, shifts = shifts.len(), "analyst shifts set");
        Ok(Response::new(resp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn analyst() -> pb::Analyst {
        pb::Analyst {
            analyst_id: "rn.jones_2".into(),
            name: "Rita Jones".into(),
            email: "rita@desk.example".into(),
            phone: "+13125550100".into(),
            pager: "PD-4411".into(),
            time_zone: "America/Chicago".into(),
            coverage: vec![
                pb::TenantCoverage {
                    tenant_id: "stmarys".into(),
                    facility_ids: vec!["main".into(), "north-2".into()],
                },
                pb::TenantCoverage {
                    tenant_id: "*".into(),
                    facility_ids: vec![],
                },
            ],
            skills: vec![
                pb::Skill {
                    module: pb::SkillModule::MedicationAdministration as i32,
                    level: 4,
                },
                pb::Skill {
                    module: pb::SkillModule::Orders as i32,
                    level: 1,
                },
            ],
            credentials: vec![pb::ClinicalCredential::Rn as i32],
            languages: vec!["en".into(), "es-MX".into()],
            max_concurrent_tickets: 3,
            shifts: vec![pb::Shift {
                day_of_week: 5,
                start: "22:00".into(),
                end: "06:00".into(),
            }],
            availability: Availability::Available as i32,
            supervisor: true,
            ..Default::default()
        }
    }

    fn caller(subject: &str, tenant: Option<&str>, all: bool, roles: &[Role]) -> Caller {
        Caller {
            subject: subject.into(),
            tenant: tenant.map(str::to_owned),
            all_tenants: all,
            roles: roles.to_vec(),
            email: None,
            phone: None,
        }
    }

    #[test]
    fn a_valid_analyst_becomes_a_row() {
        let row = validate_analyst(&analyst()).unwrap();
        assert_eq!(row.analyst_id, "rn.jones_2");
        assert_eq!(row.coverage.len(), 2);
        assert_eq!(row.coverage[0].facility_ids, vec!["main", "north-2"]);
        assert_eq!(
            row.skills[0],
            SkillRow {
                module: 2,
                level: 4
            }
        );
        assert_eq!(row.credentials, vec![1]);
        assert_eq!(row.max_concurrent, 3);
        assert_eq!(
            row.shifts,
            vec![Shift {
                day: 5,
                start_minute: 22 * 60,
                end_minute: 6 * 60
            }]
        );
        assert_eq!(row.availability, Availability::Available as i16);
        // Optional contact fields, and UNSPECIFIED availability means OFFLINE.
        let mut a = analyst();
        a.email.clear();
        a.phone.clear();
        a.pager.clear();
        a.availability = 0;
        a.shifts.clear();
        let row = validate_analyst(&a).unwrap();
        assert_eq!(row.availability, Availability::Offline as i16);
        // Output-only fields are ignored.
        a.version = 99;
        a.current_load = 7;
        let row = validate_analyst(&a).unwrap();
        assert_eq!((row.version, row.current_load), (0, 0));
    }

    #[test]
    fn every_bad_field_is_named() {
        type Change = Box<dyn Fn(&mut pb::Analyst)>;
        fn change(f: impl Fn(&mut pb::Analyst) + 'static) -> Change {
            Box::new(f)
        }
        let cases: Vec<(Change, &str)> = vec![
            (
                change(|a| a.analyst_id.clear()),
                "analyst.analyst_id: required",
            ),
            (
                change(|a| a.analyst_id = "Rita".into()),
                "analyst.analyst_id: 1-64 of [a-z0-9._-]",
            ),
            (
                change(|a| a.analyst_id = "a".repeat(65)),
                "analyst.analyst_id: 1-64",
            ),
            (
                change(|a| a.analyst_id = "r j".into()),
                "analyst.analyst_id: 1-64",
            ),
            (
                change(|a| a.name = "  ".into()),
                "analyst.name: 1-200 characters",
            ),
            (
                change(|a| a.name = "x".repeat(201)),
                "analyst.name: 1-200 characters",
            ),
            (
                change(|a| a.email = "rita".into()),
                "analyst.email: not an email address",
            ),
            (
                change(|a| a.phone = "3125550100".into()),
                "analyst.phone: E.164",
            ),
            (change(|a| a.pager = "a\nb".into()), "analyst.pager:"),
            (
                change(|a| a.time_zone = "Chicago".into()),
                "analyst.time_zone: not an IANA time zone",
            ),
            (change(|a| a.time_zone.clear()), "analyst.time_zone:"),
            (
                change(|a| a.coverage.clear()),
                "analyst.coverage: at least one tenant",
            ),
            (
                change(|a| a.coverage[0].tenant_id = "St Marys".into()),
                "analyst.coverage[0].tenant_id: a tenant slug",
            ),
            (
                change(|a| a.coverage[1].tenant_id = "stmarys".into()),
                "analyst.coverage[1].tenant_id: duplicate",
            ),
            (
                change(|a| a.coverage[1].facility_ids = vec!["main".into()]),
                "analyst.coverage[1].facility_ids: must be empty when tenant_id is \"*\"",
            ),
            (
                change(|a| a.coverage[0].facility_ids[1] = "North,2".into()),
                "analyst.coverage[0].facility_ids[1]: 1-64 of [a-z0-9-]",
            ),
            (
                change(|a| a.coverage[0].facility_ids[1] = "main".into()),
                "analyst.coverage[0].facility_ids[1]: duplicate",
            ),
            (
                change(|a| a.skills[0].module = 0),
                "analyst.skills[0].module: required",
            ),
            (
                change(|a| a.skills[1].module = 77),
                "analyst.skills[1].module: unknown value 77",
            ),
            (
                change(|a| a.skills[0].level = 0),
                "analyst.skills[0].level: 1-5",
            ),
            (
                change(|a| a.skills[1].level = 6),
                "analyst.skills[1].level: 1-5",
            ),
            (
                change(|a| a.skills[1].module = pb::SkillModule::MedicationAdministration as i32),
                "analyst.skills[1].module: duplicate",
            ),
            (
                change(|a| a.credentials.push(0)),
                "analyst.credentials[1]: required",
            ),
            (
                change(|a| a.credentials[0] = 40),
                "analyst.credentials[0]: unknown value 40",
            ),
            (
                change(|a| a.credentials.push(pb::ClinicalCredential::Rn as i32)),
                "analyst.credentials[1]: duplicate",
            ),
            (
                change(|a| a.languages[1] = "e".into()),
                "analyst.languages[1]: a BCP-47 language tag",
            ),
            (
                change(|a| a.languages[0] = "english language".into()),
                "analyst.languages[0]:",
            ),
            (
                change(|a| a.languages[1] = "EN".into()),
                "analyst.languages[1]: duplicate",
            ),
            (
                change(|a| a.max_concurrent_tickets = 0),
                "analyst.max_concurrent_tickets: 1-100",
            ),
            (
                change(|a| a.max_concurrent_tickets = 101),
                "analyst.max_concurrent_tickets: 1-100",
            ),
            (
                change(|a| a.shifts[0].day_of_week = 0),
                "analyst.shifts[0].day_of_week: 1-7",
            ),
            (
                change(|a| a.shifts[0].day_of_week = 8),
                "analyst.shifts[0].day_of_week: 1-7",
            ),
            (
                change(|a| a.shifts[0].start = "7:00".into()),
                "analyst.shifts[0].start: \"HH:MM\"",
            ),
            (
                change(|a| a.shifts[0].end = "24:00".into()),
                "analyst.shifts[0].end: \"HH:MM\"",
            ),
            (
                change(|a| a.shifts[0].end = "22:00".into()),
                "analyst.shifts[0].end: must differ from start",
            ),
            (
                change(|a| a.availability = 12),
                "analyst.availability: unknown value 12",
            ),
        ];
        for (change, expected) in cases {
            let mut a = analyst();
            change(&mut a);
            let e = validate_analyst(&a).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument);
            assert!(
                e.message().starts_with(expected),
                "{:?} should start with {expected:?}",
                e.message()
            );
        }
    }

    #[test]
    fn language_tags() {
        for ok in ["en", "es-MX", "zh-Hant-TW", "haw", "de-CH-1996"] {
            assert!(is_language_tag(ok), "{ok}");
        }
        for bad in [
            "",
            "e",
            "en-",
            "-en",
            "en_US",
            "languages-x",
            "en-toolongtag",
            "e1",
            "en--US",
        ] {
            assert!(!is_language_tag(bad), "{bad}");
        }
    }

    #[test]
    fn shifts_are_limited() {
        let many = vec![
            pb::Shift {
                day_of_week: 1,
                start: "08:00".into(),
                end: "16:00".into()
            };
            51
        ];
        let e = validate_shifts(&many, "shifts").unwrap_err();
        assert!(e.message().starts_with("shifts: at most 50"));
        assert!(validate_shifts(&[], "shifts").unwrap().is_empty());
    }

    #[test]
    fn reach_and_management() {
        let vendor = caller("ops", None, true, &[Role::VendorAdmin]);
        assert_eq!(reach(&vendor).unwrap(), Reach::Everything);
        let vendor_named = caller("ops", Some("stmarys"), true, &[Role::VendorAdmin]);
        assert_eq!(reach(&vendor_named).unwrap(), Reach::Everything);
        let admin = caller("boss", Some("stmarys"), false, &[Role::TenantAdmin]);
        assert_eq!(reach(&admin).unwrap(), Reach::Tenant("stmarys".into()));
        // A vendor-wide analyst token must name a tenant to see others.
        let roaming = caller("x", None, true, &[Role::Analyst]);
        assert_eq!(
            reach(&roaming).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );

        let mut own = validate_analyst(&analyst()).unwrap();
        own.coverage.retain(|c| c.tenant_id == "stmarys");
        let shared = validate_analyst(&analyst()).unwrap(); // stmarys and "*"
        let mut foreign = own.clone();
        foreign.coverage[0].tenant_id = "lakeside".into();
        let t = Reach::Tenant("stmarys".into());
        assert!(check_manage(&t, &own).is_ok());
        assert_eq!(
            check_manage(&t, &shared).unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
        assert_eq!(
            check_manage(&t, &foreign).unwrap_err().code(),
            tonic::Code::NotFound
        );
        assert!(check_manage(&Reach::Everything, &foreign).is_ok());
    }

    #[test]
    fn directory_events_go_to_every_tenant_before_and_after() {
        let mut before = validate_analyst(&analyst()).unwrap(); // stmarys, "*"
        before.version = 3;
        let mut after = before.clone();
        after.coverage = vec![
            Coverage {
                tenant_id: "lakeside".into(),
                facility_ids: vec![],
            },
            Coverage {
                tenant_id: "stmarys".into(),
                facility_ids: vec![],
            },
        ];
        after.version = 4;
        let tenants = event_tenants([&before, &after]);
        assert_eq!(tenants, vec!["_all", "lakeside", "stmarys"]);
        let info = directory::analyst_info(&after);
        let envs = events(&tenants, &after, || {
            Payload::AnalystUpserted(AnalystUpserted {
                analyst: Some(info.clone()),
            })
        });
        assert_eq!(envs.len(), 3);
        for (e, t) in envs.iter().zip(&tenants) {
            assert_eq!(&e.tenant_id, t);
            assert_eq!(e.producer, "routing");
            assert_eq!(e.aggregate_id, "rn.jones_2");
            assert_eq!(e.aggregate_version, 4);
            assert!(
                wardline_kit::events::subject(e)
                    .unwrap()
                    .ends_with(".analyst.upserted")
            );
        }
        assert_eq!(
            wardline_kit::events::subject(&envs[0]).unwrap(),
            "wardline.events._all.analyst.upserted"
        );
    }

    #[test]
    fn versions_and_pages() {
        let mut a = validate_analyst(&analyst()).unwrap();
        a.version = 5;
        assert!(check_version(0, &a).is_ok());
        assert!(check_version(5, &a).is_ok());
        assert_eq!(
            check_version(4, &a).unwrap_err().code(),
            tonic::Code::Aborted
        );
        assert_eq!(page_size(0).unwrap(), 100);
        assert_eq!(page_size(500).unwrap(), 500);
        assert!(
            page_size(501)
                .unwrap_err()
                .message()
                .starts_with("page_size")
        );
    }

    #[test]
    fn list_filters_are_checked() {
        let ok = ListAnalystsRequest {
            availabilities: vec![Availability::Available as i32, Availability::Busy as i32],
            skill_module: pb::SkillModule::Printing as i32,
            min_skill_level: 2,
            credential: pb::ClinicalCredential::Md as i32,
            supervisors_only: true,
            page_token: "m.smith".into(),
            ..Default::default()
        };
        let f = list_filter(&ok).unwrap();
        assert_eq!(f.availabilities, vec![1, 2]);
        assert_eq!(
            (f.skill_module, f.min_skill_level, f.credential),
            (Some(10), 2, Some(2))
        );
        assert_eq!(f.after.as_deref(), Some("m.smith"));
        assert!(f.supervisors_only);
        let none = list_filter(&ListAnalystsRequest::default()).unwrap();
        assert_eq!(none, AnalystFilter::default());
        let cases: Vec<(ListAnalystsRequest, &str)> = vec![
            (
                ListAnalystsRequest {
                    availabilities: vec![0],
                    ..Default::default()
                },
                "availabilities[0]",
            ),
            (
                ListAnalystsRequest {
                    availabilities: vec![1, 9],
                    ..Default::default()
                },
                "availabilities[1]",
            ),
            (
                ListAnalystsRequest {
                    skill_module: 99,
                    ..Default::default()
                },
                "skill_module: unknown value 99",
            ),
            (
                ListAnalystsRequest {
                    min_skill_level: 6,
                    ..Default::default()
                },
                "min_skill_level: 0-5",
            ),
            (
                ListAnalystsRequest {
                    credential: 99,
                    ..Default::default()
                },
                "credential: unknown value 99",
            ),
            (
                ListAnalystsRequest {
                    page_token: "Not A Token".into(),
                    ..Default::default()
                },
                "page_token",
            ),
        ];
        for (r, expected) in cases {
            let e = list_filter(&r).unwrap_err();
            assert!(
                e.message().starts_with(expected),
                "{:?} should start with {expected:?}",
                e.message()
            );
        }
    }
}

/// The handlers against a real PostgreSQL (idempotency, outbox, access),
/// called directly with the caller the interceptor would have verified.
#[cfg(test)]
pub(crate) mod db_tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::sync::Notify;
    use wardline_testkit::TestDb;

    use super::*;

    /// The API over the runtime role's pool (row-level security applies).
    pub(crate) async fn api(prefix: &str) -> (TestDb, Api) {
        let db = TestDb::create(prefix).await;
        let pool = db.runtime_pool(&crate::MIGRATOR).await;
        (db, Api::new(pool, Arc::new(Notify::new())))
    }

    pub(crate) fn req<T>(msg: T, caller: &Caller) -> Request<T> {
        let mut r = Request::new(msg);
        r.extensions_mut().insert(caller.clone());
        r
    }

    pub(crate) fn who(subject: &str, tenant: Option<&str>, roles: &[Role]) -> Caller {
        Caller {
            subject: subject.into(),
            all_tenants: roles.contains(&Role::VendorAdmin) && tenant.is_none(),
            tenant: tenant.map(str::to_owned),
            roles: roles.to_vec(),
            email: None,
            phone: None,
        }
    }

    async fn subjects(api: &Api) -> Vec<String> {
        sqlx::query_scalar("SELECT subject FROM outbox ORDER BY seq")
            .fetch_all(
                &mut *wardline_kit::db::begin(&api.pool, Scope::AllTenants)
                    .await
                    .unwrap(),
            )
            .await
            .unwrap()
    }

    async fn woken(api: &Api) -> bool {
        tokio::time::timeout(Duration::from_millis(50), api.wake.notified())
            .await
            .is_ok()
    }

    fn upsert(id: &str, request_id: &str, tenants: &[&str]) -> UpsertAnalystRequest {
        let mut a = super::tests::analyst();
        a.analyst_id = id.into();
        a.coverage = tenants
            .iter()
            .map(|t| pb::TenantCoverage {
                tenant_id: (*t).into(),
                facility_ids: vec![],
            })
            .collect();
        a.availability = 0;
        UpsertAnalystRequest {
            request_id: request_id.into(),
            analyst: Some(a),
            expected_version: 0,
        }
    }

    #[tokio::test]
    async fn a_vendor_creates_an_analyst_once_and_every_covered_tenant_hears_it() {
        let (_db, api) = api("routing_api_upsert").await;
        let vendor = who("ops", None, &[Role::VendorAdmin]);
        let r = upsert("rn.jones", "u-1", &["stmarys", "*"]);
        let first = api
            .upsert_analyst(req(r.clone(), &vendor))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(first.version, 1);
        assert_eq!(
            first.availability,
            Availability::Offline as i32,
            "UNSPECIFIED creates OFFLINE"
        );
        assert!(woken(&api).await);
        assert_eq!(
            subjects(&api).await,
            [
                "wardline.events._all.analyst.upserted",
                "wardline.events.stmarys.analyst.upserted"
            ]
        );
        // A retry replays the first answer and publishes nothing more.
        let again = api
            .upsert_analyst(req(r.clone(), &vendor))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(again, first);
        assert_eq!(subjects(&api).await.len(), 2);
        // The same key for another request is refused.
        let mut other = r.clone();
        other.analyst.as_mut().unwrap().name = "Someone Else".into();
        let e = api.upsert_analyst(req(other, &vendor)).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition);
        assert!(e.message().starts_with("request_id"));
        // A replacement dropping "*" is still announced to "_all".
        let mut moved = upsert("rn.jones", "u-2", &["lakeside"]);
        moved.expected_version = 1;
        let second = api
            .upsert_analyst(req(moved.clone(), &vendor))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(second.version, 2);
        assert_eq!(subjects(&api).await.len(), 2 + 3);
        moved.request_id = "u-3".into();
        let e = api.upsert_analyst(req(moved, &vendor)).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Aborted);
        assert!(e.message().starts_with("expected_version"));
    }

    #[tokio::test]
    async fn a_tenant_admin_manages_only_analysts_of_their_own_tenant() {
        let (_db, api) = api("routing_api_tenant").await;
        let vendor = who("ops", None, &[Role::VendorAdmin]);
        let admin = who("boss", Some("stmarys"), &[Role::TenantAdmin]);
        api.upsert_analyst(req(
            upsert("shared", "v-1", &["stmarys", "lakeside"]),
            &vendor,
        ))
        .await
        .unwrap();
        api.upsert_analyst(req(upsert("lake.only", "v-2", &["lakeside"]), &vendor))
            .await
            .unwrap();
        let mine = api
            .upsert_analyst(req(upsert("mine", "a-1", &["stmarys"]), &admin))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(mine.version, 1);
        for (r, code) in [
            (
                upsert("wide", "a-2", &["stmarys", "lakeside"]),
                tonic::Code::PermissionDenied,
            ),
            (upsert("wild", "a-3", &["*"]), tonic::Code::PermissionDenied),
            (
                upsert("shared", "a-4", &["stmarys"]),
                tonic::Code::PermissionDenied,
            ),
            // Another hospital's analyst: the id is taken, nothing more (L8).
            (
                upsert("lake.only", "a-5", &["stmarys"]),
                tonic::Code::AlreadyExists,
            ),
        ] {
            let e = api.upsert_analyst(req(r, &admin)).await.unwrap_err();
            assert_eq!(e.code(), code, "{}", e.message());
        }
        let shifts = |id: &str, rid: &str| SetShiftsRequest {
            request_id: rid.into(),
            analyst_id: id.into(),
            shifts: vec![pb::Shift {
                day_of_week: 1,
                start: "07:00".into(),
                end: "19:00".into(),
            }],
            expected_version: 0,
        };
        let e = api
            .set_shifts(req(shifts("shared", "s-1"), &admin))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        let e = api
            .set_shifts(req(shifts("lake.only", "s-2"), &admin))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound);
        let e = api
            .set_shifts(req(shifts("nobody", "s-3"), &admin))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound);
        let got = api
            .set_shifts(req(shifts("mine", "s-4"), &admin))
            .await
            .unwrap()
            .into_inner();
        assert_eq!((got.version, got.shifts.len()), (2, 1));
        // Reading: their tenant's analysts (shared ones too), not others.
        let get = |id: &str| GetAnalystRequest {
            analyst_id: id.into(),
        };
        assert!(api.get_analyst(req(get("shared"), &admin)).await.is_ok());
        let e = api
            .get_analyst(req(get("lake.only"), &admin))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound);
        let list = api
            .list_analysts(req(ListAnalystsRequest::default(), &admin))
            .await
            .unwrap()
            .into_inner();
        let ids: Vec<&str> = list
            .analysts
            .iter()
            .map(|a| a.analyst_id.as_str())
            .collect();
        assert_eq!(ids, ["mine", "shared"]);
        let e = api
            .list_analysts(req(
                ListAnalystsRequest {
                    tenant_id: "lakeside".into(),
                    ..Default::default()
                },
                &admin,
            ))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound);
        // A vendor pages through everyone; one page at a time.
        let page = api
            .list_analysts(req(
                ListAnalystsRequest {
                    page_size: 2,
                    ..Default::default()
                },
                &vendor,
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(page.analysts.len(), 2);
        assert_eq!(page.next_page_token, "mine");
        let rest = api
            .list_analysts(req(
                ListAnalystsRequest {
                    page_size: 2,
                    page_token: page.next_page_token,
                    ..Default::default()
                },
                &vendor,
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(rest.analysts.len(), 1);
        assert_eq!(rest.analysts[0].analyst_id, "shared");
        assert!(rest.next_page_token.is_empty());
        // "mine" works around the clock; "shared" only three days from now.
        use chrono::Datelike;
        let today = Utc::now()
            .with_timezone(&chrono_tz::America::Chicago)
            .weekday()
            .number_from_monday() as i32;
        let around_the_clock: Vec<pb::Shift> = (1..=7)
            .flat_map(|d| {
                [("00:00", "12:00"), ("12:00", "00:00")].map(|(start, end)| pb::Shift {
                    day_of_week: d,
                    start: start.into(),
                    end: end.into(),
                })
            })
            .collect();
        let later = vec![pb::Shift {
            day_of_week: (today + 2) % 7 + 1,
            start: "01:00".into(),
            end: "02:00".into(),
        }];
        for (id, rid, shifts) in [("mine", "s-5", around_the_clock), ("shared", "s-6", later)] {
            let r = SetShiftsRequest {
                request_id: rid.into(),
                analyst_id: id.into(),
                shifts,
                expected_version: 0,
            };
            api.set_shifts(req(r, &vendor)).await.unwrap();
        }
        let on = api
            .list_analysts(req(
                ListAnalystsRequest {
                    on_shift_only: true,
                    page_size: 1,
                    ..Default::default()
                },
                &admin,
            ))
            .await
            .unwrap()
            .into_inner();
        let ids: Vec<&str> = on.analysts.iter().map(|a| a.analyst_id.as_str()).collect();
        assert_eq!(ids, ["mine"]);
        assert!(on.analysts[0].on_shift);
        assert!(
            on.next_page_token.is_empty(),
            "nobody else of stmarys is on shift"
        );
    }

    #[tokio::test]
    async fn an_analyst_sets_their_own_availability() {
        let (_db, api) = api("routing_api_avail").await;
        let vendor = who("ops", None, &[Role::VendorAdmin]);
        api.upsert_analyst(req(upsert("rn.jones", "v-1", &["stmarys"]), &vendor))
            .await
            .unwrap();
        api.upsert_analyst(req(upsert("other", "v-2", &["stmarys"]), &vendor))
            .await
            .unwrap();
        assert!(woken(&api).await);
        let me = who("rn.jones", Some("stmarys"), &[Role::Analyst]);
        let set = |id: &str, rid: &str, a: Availability| SetAvailabilityRequest {
            request_id: rid.into(),
            analyst_id: id.into(),
            availability: a as i32,
            expected_version: 0,
        };
        let before = subjects(&api).await.len();
        let got = api
            .set_availability(req(set("", "me-1", Availability::Available), &me))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (got.availability, got.version),
            (Availability::Available as i32, 2)
        );
        assert!(woken(&api).await);
        assert_eq!(
            subjects(&api).await[before..],
            ["wardline.events.stmarys.analyst.availability_changed"]
        );
        // Already available: nothing changes, nothing is published or woken.
        let same = api
            .set_availability(req(set("rn.jones", "me-2", Availability::Available), &me))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(same.version, 2);
        assert_eq!(subjects(&api).await.len(), before + 1);
        assert!(!woken(&api).await);
        // Going away publishes but does not wake the drainer.
        api.set_availability(req(set("", "me-3", Availability::Away), &me))
            .await
            .unwrap();
        assert!(!woken(&api).await);
        // Another analyst is not theirs to change.
        let e = api
            .set_availability(req(set("other", "me-4", Availability::Busy), &me))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        let e = api
            .set_availability(req(set("", "me-5", Availability::Unspecified), &me))
            .await
            .unwrap_err();
        assert!(e.message().starts_with("availability: required"));
        // Two analysts' "myself" requests with one key never replay each other.
        let other = who("other", Some("stmarys"), &[Role::Analyst]);
        let e = api
            .set_availability(req(set("", "me-1", Availability::Available), &other))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition);
        // They may read themselves, and a requester may not read anyone.
        let got = api
            .get_analyst(req(GetAnalystRequest::default(), &me))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(got.availability, Availability::Away as i32);
        let requester = who("rn.jones", Some("stmarys"), &[Role::Requester]);
        let e = api
            .get_analyst(req(GetAnalystRequest::default(), &requester))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
    }

    /// Audit L14 and L8: another hospital's user whose subject equals a
    /// vendor analyst's id is not that analyst, and a hospital sees a shared
    /// analyst only as far as its own tenant goes.
    #[tokio::test]
    async fn the_directory_answers_per_tenant() {
        let (_db, api) = api("routing_api_per_tenant").await;
        let vendor = who("ops", None, &[Role::VendorAdmin]);
        api.upsert_analyst(req(upsert("a.vendor", "v-1", &["stmarys"]), &vendor))
            .await
            .unwrap();
        api.upsert_analyst(req(
            upsert("shared", "v-2", &["stmarys", "lakeside"]),
            &vendor,
        ))
        .await
        .unwrap();
        // lakeside's admin, subject "a.vendor": not the stmarys analyst.
        let namesake = who("a.vendor", Some("lakeside"), &[Role::TenantAdmin]);
        let e = api
            .set_availability(req(
                SetAvailabilityRequest {
                    request_id: "l14".into(),
                    analyst_id: String::new(),
                    availability: Availability::Offline as i32,
                    expected_version: 0,
                },
                &namesake,
            ))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound);
        let e = api
            .get_analyst(req(GetAnalystRequest::default(), &namesake))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound);
        // The real one, on a stmarys token, is themselves.
        let real = who("a.vendor", Some("stmarys"), &[Role::Analyst]);
        let me = api
            .get_analyst(req(GetAnalystRequest::default(), &real))
            .await
            .unwrap()
            .into_inner();
        assert!(!me.email.is_empty());
        // lakeside lists the shared analyst with lakeside's coverage only
        // and without the vendor's contacts; the vendor sees it all.
        let listed = api
            .list_analysts(req(ListAnalystsRequest::default(), &namesake))
            .await
            .unwrap()
            .into_inner()
            .analysts;
        assert_eq!(listed.len(), 1);
        let coverage: Vec<&str> = listed[0]
            .coverage
            .iter()
            .map(|c| c.tenant_id.as_str())
            .collect();
        assert_eq!(coverage, ["lakeside"]);
        assert_eq!(
            (listed[0].email.as_str(), listed[0].phone.as_str()),
            ("", "")
        );
        let whole = api
            .get_analyst(req(
                GetAnalystRequest {
                    analyst_id: "shared".into(),
                },
                &vendor,
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(whole.coverage.len(), 2);
        assert!(!whole.email.is_empty());
    }
}
