//! The analyst directory's storage: analysts with their coverage, skills
//! and shifts, and the candidates of a routing decision.
//!
//! What must hold:
//! - An analyst is read in one query whatever it holds: coverage, skills and
//!   shifts are aggregated into arrays beside the analyst's row, so reading
//!   the candidates of a decision costs one round trip whether 3 or 3,000
//!   analysts cover the tenant (it runs on every routing decision).
//! - A facility list travels through that aggregation as one comma-joined
//!   string per covered tenant. Facility ids are slugs (`[a-z0-9-]`,
//!   checked at the edge), so a comma never occurs inside one.
//! - `current_load` and `idle_since` belong to the engine: an upsert never
//!   overwrites them, and only [`set_availability`] and the engine move them.
//! - `version` grows by one per change (upsert, availability, shifts), so
//!   clients can pass it back as `expected_version` and consumers of the
//!   directory events can skip stale copies.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use sqlx::{PgConnection, Postgres, QueryBuilder};
use wardline_kit::events::timestamp;
use wardline_proto::routing as pb;

use crate::domain::decision::AnalystFacts;
use crate::domain::shift::{Shift, format_hhmm, on_shift};
use crate::domain::{Availability, ClinicalCredential, SkillModule};

/// One tenant an analyst covers (`"*"` = every tenant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coverage {
    /// Tenant slug or `"*"`.
    pub tenant_id: String,
    /// Facilities of that tenant; empty means all of them.
    pub facility_ids: Vec<String>,
}

/// One skill of an analyst, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SkillRow {
    /// `SkillModule` value.
    pub module: i16,
    /// Proficiency 1-5.
    pub level: i16,
}

/// An analyst with everything the directory holds about them. Contact
/// fields are staff data, never patient data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnalystRow {
    pub analyst_id: String,
    pub name: String,
    pub email: String,
    pub phone: String,
    pub pager: String,
    /// IANA zone the shifts are in (checked at the edge; see [`AnalystRow::tz`]).
    pub time_zone: String,
    pub coverage: Vec<Coverage>,
    pub skills: Vec<SkillRow>,
    /// `ClinicalCredential` values.
    pub credentials: Vec<i16>,
    pub languages: Vec<String>,
    pub max_concurrent: i32,
    pub shifts: Vec<Shift>,
    /// `Availability` value. On update only [`set_availability`] changes it.
    pub availability: i16,
    pub supervisor: bool,
    pub tier2: bool,
    pub on_call: bool,
    /// Engine-owned: tickets held.
    pub current_load: i32,
    /// Engine-owned: idle since (ranking prefers the longest idle).
    pub idle_since: DateTime<Utc>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl AnalystRow {
    /// The analyst's time zone; an unparsable one (which the edge never
    /// stores) falls back to UTC rather than failing a routing decision.
    pub fn tz(&self) -> Tz {
        parse_tz(&self.time_zone)
    }

    /// True when the analyst covers `tenant`, directly or through `"*"`.
    pub fn covers(&self, tenant: &str) -> bool {
        self.coverage
            .iter()
            .any(|c| c.tenant_id == tenant || c.tenant_id == ALL_TENANTS)
    }

    /// True when the analyst covers `tenant` and nothing else (what a
    /// tenant admin may manage).
    pub fn covers_only(&self, tenant: &str) -> bool {
        !self.coverage.is_empty() && self.coverage.iter().all(|c| c.tenant_id == tenant)
    }

    /// The availability as the enum (unknown stored values read as OFFLINE).
    pub fn availability(&self) -> Availability {
        Availability::try_from(i32::from(self.availability)).unwrap_or(Availability::Offline)
    }
}

/// The coverage entry meaning "every tenant".
pub const ALL_TENANTS: &str = "*";

fn parse_tz(zone: &str) -> Tz {
    zone.parse().unwrap_or(chrono_tz::UTC)
}

/// Columns of an analyst with coverage, skills and shifts aggregated in
/// arrays (one row per analyst). A macro so that queries stay `'static`.
macro_rules! analyst_select {
    () => {
        "SELECT a.analyst_id, a.name, a.email, a.phone, a.pager, a.time_zone, a.credentials, a.languages,
                a.max_concurrent, a.availability, a.supervisor, a.tier2, a.on_call, a.current_load,
                a.idle_since, a.version, a.created_at, a.updated_at,
                COALESCE(c.tenants, '{}') AS coverage_tenants,
                COALESCE(c.facilities, '{}') AS coverage_facilities,
                COALESCE(k.modules, '{}') AS skill_modules,
                COALESCE(k.levels, '{}') AS skill_levels,
                COALESCE(h.days, '{}') AS shift_days,
                COALESCE(h.starts, '{}') AS shift_starts,
                COALESCE(h.ends, '{}') AS shift_ends
           FROM analysts a
           LEFT JOIN LATERAL (
                SELECT array_agg(x.tenant_id ORDER BY x.tenant_id) AS tenants,
                       array_agg(array_to_string(x.facility_ids, ',') ORDER BY x.tenant_id) AS facilities
                  FROM analyst_coverage x WHERE x.analyst_id = a.analyst_id) c ON TRUE
           LEFT JOIN LATERAL (
                SELECT array_agg(s.module ORDER BY s.module) AS modules,
                       array_agg(s.level ORDER BY s.module) AS levels
                  FROM analyst_skills s WHERE s.analyst_id = a.analyst_id) k ON TRUE
           LEFT JOIN LATERAL (
                SELECT array_agg(w.day_of_week ORDER BY w.day_of_week, w.start_minute, w.end_minute) AS days,
                       array_agg(w.start_minute ORDER BY w.day_of_week, w.start_minute, w.end_minute) AS starts,
                       array_agg(w.end_minute ORDER BY w.day_of_week, w.start_minute, w.end_minute) AS ends
                  FROM analyst_shifts w WHERE w.analyst_id = a.analyst_id) h ON TRUE"
    };
}

/// Skills and shifts aggregated per analyst, for [`candidates`].
macro_rules! children_joins {
    () => {
        " LEFT JOIN LATERAL (
                SELECT array_agg(s.module ORDER BY s.module) AS modules,
                       array_agg(s.level ORDER BY s.module) AS levels
                  FROM analyst_skills s WHERE s.analyst_id = a.analyst_id) k ON TRUE
          LEFT JOIN LATERAL (
                SELECT array_agg(w.day_of_week) AS days, array_agg(w.start_minute) AS starts,
                       array_agg(w.end_minute) AS ends
                  FROM analyst_shifts w WHERE w.analyst_id = a.analyst_id) h ON TRUE"
    };
}

#[derive(sqlx::FromRow)]
struct Flat {
    analyst_id: String,
    name: String,
    email: String,
    phone: String,
    pager: String,
    time_zone: String,
    credentials: Vec<i16>,
    languages: Vec<String>,
    max_concurrent: i32,
    availability: i16,
    supervisor: bool,
    tier2: bool,
    on_call: bool,
    current_load: i32,
    idle_since: DateTime<Utc>,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    coverage_tenants: Vec<String>,
    coverage_facilities: Vec<String>,
    skill_modules: Vec<i16>,
    skill_levels: Vec<i16>,
    shift_days: Vec<i16>,
    shift_starts: Vec<i32>,
    shift_ends: Vec<i32>,
}

fn coverage_of(tenants: Vec<String>, facilities: Vec<String>) -> Vec<Coverage> {
    tenants
        .into_iter()
        .zip(facilities)
        .map(|(tenant_id, f)| Coverage {
            tenant_id,
            facility_ids: split_facilities(&f),
        })
        .collect()
}

fn split_facilities(joined: &str) -> Vec<String> {
    if joined.is_empty() {
        Vec::new()
    } else {
        joined.split(',').map(str::to_owned).collect()
    }
}

fn shifts_of(days: &[i16], starts: &[i32], ends: &[i32]) -> Vec<Shift> {
    days.iter()
        .zip(starts)
        .zip(ends)
        .filter_map(|((d, s), e)| {
            Some(Shift {
                day: u8::try_from(*d).ok()?,
                start_minute: u16::try_from(*s).ok()?,
                end_minute: u16::try_from(*e).ok()?,
            })
        })
        .collect()
}

impl From<Flat> for AnalystRow {
    fn from(f: Flat) -> Self {
        let shifts = shifts_of(&f.shift_days, &f.shift_starts, &f.shift_ends);
        AnalystRow {
            coverage: coverage_of(f.coverage_tenants, f.coverage_facilities),
            skills: f
                .skill_modules
                .iter()
                .zip(&f.skill_levels)
                .map(|(m, l)| SkillRow {
                    module: *m,
                    level: *l,
                })
                .collect(),
            shifts,
            analyst_id: f.analyst_id,
            name: f.name,
            email: f.email,
            phone: f.phone,
            pager: f.pager,
            time_zone: f.time_zone,
            credentials: f.credentials,
            languages: f.languages,
            max_concurrent: f.max_concurrent,
            availability: f.availability,
            supervisor: f.supervisor,
            tier2: f.tier2,
            on_call: f.on_call,
            current_load: f.current_load,
            idle_since: f.idle_since,
            version: f.version,
            created_at: f.created_at,
            updated_at: f.updated_at,
        }
    }
}

/// Creates or replaces an analyst and returns its version afterwards (1
/// when created). Coverage, skills and shifts are replaced; on update the
/// availability, `current_load` and `idle_since` are kept (availability
/// changes only through [`set_availability`]).
pub async fn upsert_analyst(conn: &mut PgConnection, a: &AnalystRow) -> Result<i64, sqlx::Error> {
    let version: i64 = sqlx::query_scalar(
        "INSERT INTO analysts (analyst_id, name, email, phone, pager, time_zone, credentials, languages,
                max_concurrent, availability, supervisor, tier2, on_call)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
         ON CONFLICT (analyst_id) DO UPDATE SET
                name = EXCLUDED.name, email = EXCLUDED.email, phone = EXCLUDED.phone, pager = EXCLUDED.pager,
                time_zone = EXCLUDED.time_zone, credentials = EXCLUDED.credentials,
                languages = EXCLUDED.languages, max_concurrent = EXCLUDED.max_concurrent,
                supervisor = EXCLUDED.supervisor, tier2 = EXCLUDED.tier2, on_call = EXCLUDED.on_call,
                version = analysts.version + 1, updated_at = now()
         RETURNING version",
    )
    .bind(&a.analyst_id)
    .bind(&a.name)
    .bind(&a.email)
    .bind(&a.phone)
    .bind(&a.pager)
    .bind(&a.time_zone)
    .bind(&a.credentials)
    .bind(&a.languages)
    .bind(a.max_concurrent)
    .bind(a.availability)
    .bind(a.supervisor)
    .bind(a.tier2)
    .bind(a.on_call)
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query(
        "WITH c AS (DELETE FROM analyst_coverage WHERE analyst_id = $1),
              k AS (DELETE FROM analyst_skills WHERE analyst_id = $1)
         DELETE FROM analyst_shifts WHERE analyst_id = $1",
    )
    .bind(&a.analyst_id)
    .execute(&mut *conn)
    .await?;
    let tenants: Vec<&str> = a.coverage.iter().map(|c| c.tenant_id.as_str()).collect();
    let facilities: Vec<String> = a
        .coverage
        .iter()
        .map(|c| c.facility_ids.join(","))
        .collect();
    let modules: Vec<i16> = a.skills.iter().map(|s| s.module).collect();
    let levels: Vec<i16> = a.skills.iter().map(|s| s.level).collect();
    let (days, starts, ends) = shift_arrays(&a.shifts);
    // Three inserts into three tables in one round trip.
    sqlx::query(
        "WITH c AS (
              INSERT INTO analyst_coverage (analyst_id, tenant_id, facility_ids)
              SELECT $1, t, string_to_array(f, ',') FROM UNNEST($2::text[], $3::text[]) AS u(t, f)),
          k AS (
              INSERT INTO analyst_skills (analyst_id, module, level)
              SELECT $1, m, l FROM UNNEST($4::smallint[], $5::smallint[]) AS u(m, l))
         INSERT INTO analyst_shifts (analyst_id, day_of_week, start_minute, end_minute)
         SELECT $1, d, s, e FROM UNNEST($6::smallint[], $7::int[], $8::int[]) AS u(d, s, e)",
    )
    .bind(&a.analyst_id)
    .bind(&tenants)
    .bind(&facilities)
    .bind(&modules)
    .bind(&levels)
    .bind(&days)
    .bind(&starts)
    .bind(&ends)
    .execute(&mut *conn)
    .await?;
    Ok(version)
}

fn shift_arrays(shifts: &[Shift]) -> (Vec<i16>, Vec<i32>, Vec<i32>) {
    (
        shifts.iter().map(|s| i16::from(s.day)).collect(),
        shifts.iter().map(|s| i32::from(s.start_minute)).collect(),
        shifts.iter().map(|s| i32::from(s.end_minute)).collect(),
    )
}

/// One analyst, or `None` when there is none with this id.
pub async fn get_analyst(
    conn: &mut PgConnection,
    id: &str,
) -> Result<Option<AnalystRow>, sqlx::Error> {
    let row: Option<Flat> = sqlx::query_as(concat!(analyst_select!(), " WHERE a.analyst_id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?;
    Ok(row.map(AnalystRow::from))
}

/// One analyst, locked (`FOR UPDATE`) until the transaction ends: the read
/// of every change, so that checks and the write see the same version.
pub async fn lock_analyst(
    conn: &mut PgConnection,
    id: &str,
) -> Result<Option<AnalystRow>, sqlx::Error> {
    let row: Option<Flat> = sqlx::query_as(concat!(
        analyst_select!(),
        " WHERE a.analyst_id = $1 FOR UPDATE OF a"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(AnalystRow::from))
}

/// Filters of an analyst listing (all optional; combined with AND).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnalystFilter {
    /// Only analysts covering this tenant, directly or through `"*"`.
    pub tenant: Option<String>,
    /// Only these availabilities (any when empty).
    pub availabilities: Vec<i16>,
    /// Only analysts with this skill module (any module when `None`) ...
    pub skill_module: Option<i16>,
    /// ... at this level or higher (0: any level).
    pub min_skill_level: i16,
    /// Only analysts holding this credential.
    pub credential: Option<i16>,
    /// Only supervisors.
    pub supervisors_only: bool,
    /// Only analysts whose id sorts after this one (the page cursor).
    pub after: Option<String>,
}

/// Analysts matching `f`, ordered by id, at most `limit`. Whether an
/// analyst is on shift depends on their time zone and is filtered by the
/// caller, not here.
pub async fn list_analysts(
    conn: &mut PgConnection,
    f: &AnalystFilter,
    limit: i64,
) -> Result<Vec<AnalystRow>, sqlx::Error> {
    let mut q: QueryBuilder<Postgres> =
        QueryBuilder::new(concat!(analyst_select!(), " WHERE TRUE"));
    if let Some(t) = &f.tenant {
        q.push(
            " AND EXISTS (SELECT 1 FROM analyst_coverage v
                           WHERE v.analyst_id = a.analyst_id AND v.tenant_id IN ('*', ",
        )
        .push_bind(t.clone())
        .push("))");
    }
    if !f.availabilities.is_empty() {
        q.push(" AND a.availability = ANY(")
            .push_bind(f.availabilities.clone())
            .push(")");
    }
    if f.skill_module.is_some() || f.min_skill_level > 0 {
        q.push(" AND EXISTS (SELECT 1 FROM analyst_skills z WHERE z.analyst_id = a.analyst_id");
        if let Some(m) = f.skill_module {
            q.push(" AND z.module = ").push_bind(m);
        }
        if f.min_skill_level > 0 {
            q.push(" AND z.level >= ").push_bind(f.min_skill_level);
        }
        q.push(")");
    }
    if let Some(c) = f.credential {
        q.push(" AND ").push_bind(c).push(" = ANY(a.credentials)");
    }
    if f.supervisors_only {
        q.push(" AND a.supervisor");
    }
    if let Some(after) = &f.after {
        q.push(" AND a.analyst_id > ").push_bind(after.clone());
    }
    q.push(" ORDER BY a.analyst_id LIMIT ").push_bind(limit);
    let rows: Vec<Flat> = q.build_query_as().fetch_all(conn).await?;
    Ok(rows.into_iter().map(AnalystRow::from).collect())
}

/// Sets an analyst's availability (version + 1) and returns the analyst
/// afterwards, `None` when there is none. Becoming AVAILABLE from anything
/// else with no ticket held restarts the idle clock, so an analyst coming
/// back from a break does not jump the queue of those who waited.
pub async fn set_availability(
    conn: &mut PgConnection,
    id: &str,
    availability: Availability,
) -> Result<Option<AnalystRow>, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE analysts SET availability = $2,
                idle_since = CASE WHEN $2 = 1 AND availability <> 1 AND current_load = 0
                                  THEN now() ELSE idle_since END,
                version = version + 1, updated_at = now()
          WHERE analyst_id = $1",
    )
    .bind(id)
    .bind(availability as i16)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if updated == 0 {
        return Ok(None);
    }
    get_analyst(conn, id).await
}

/// Replaces an analyst's weekly shifts and returns the version afterwards,
/// `None` when there is no such analyst.
pub async fn set_shifts(
    conn: &mut PgConnection,
    id: &str,
    shifts: &[Shift],
) -> Result<Option<i64>, sqlx::Error> {
    let version: Option<i64> = sqlx::query_scalar(
        "UPDATE analysts SET version = version + 1, updated_at = now() WHERE analyst_id = $1 RETURNING version",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    if version.is_none() {
        return Ok(None);
    }
    let (days, starts, ends) = shift_arrays(shifts);
    sqlx::query("DELETE FROM analyst_shifts WHERE analyst_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO analyst_shifts (analyst_id, day_of_week, start_minute, end_minute)
         SELECT $1, d, s, e FROM UNNEST($2::smallint[], $3::int[], $4::int[]) AS u(d, s, e)",
    )
    .bind(id)
    .bind(&days)
    .bind(&starts)
    .bind(&ends)
    .execute(&mut *conn)
    .await?;
    Ok(version)
}

#[derive(sqlx::FromRow)]
struct CandidateFlat {
    analyst_id: String,
    time_zone: String,
    credentials: Vec<i16>,
    availability: i16,
    max_concurrent: i32,
    current_load: i32,
    idle_since: DateTime<Utc>,
    coverage_tenants: Vec<String>,
    coverage_facilities: Vec<String>,
    skill_modules: Vec<i16>,
    skill_levels: Vec<i16>,
    shift_days: Vec<i16>,
    shift_starts: Vec<i32>,
    shift_ends: Vec<i32>,
}

impl From<CandidateFlat> for AnalystFacts {
    fn from(f: CandidateFlat) -> Self {
        AnalystFacts {
            time_zone: parse_tz(&f.time_zone),
            coverage: coverage_of(f.coverage_tenants, f.coverage_facilities)
                .into_iter()
                .map(|c| (c.tenant_id, c.facility_ids))
                .collect(),
            skills: f
                .skill_modules
                .iter()
                .zip(&f.skill_levels)
                .filter_map(|(m, l)| {
                    let module = SkillModule::try_from(i32::from(*m)).ok()?;
                    Some((module, u32::try_from(*l).ok()?))
                })
                .collect(),
            credentials: f
                .credentials
                .iter()
                .filter_map(|c| ClinicalCredential::try_from(i32::from(*c)).ok())
                .collect(),
            availability: Availability::try_from(i32::from(f.availability))
                .unwrap_or(Availability::Offline),
            shifts: shifts_of(&f.shift_days, &f.shift_starts, &f.shift_ends),
            max_concurrent: u32::try_from(f.max_concurrent).unwrap_or(0),
            current_load: u32::try_from(f.current_load).unwrap_or(0),
            idle_since: f.idle_since,
            analyst_id: f.analyst_id,
        }
    }
}

/// The decision's view of an analyst row (benchmarks and tools that hold
/// rows already; routing itself loads [`candidates`]).
pub fn facts(a: &AnalystRow) -> AnalystFacts {
    AnalystFacts {
        analyst_id: a.analyst_id.clone(),
        time_zone: a.tz(),
        coverage: a
            .coverage
            .iter()
            .map(|c| (c.tenant_id.clone(), c.facility_ids.clone()))
            .collect(),
        skills: a
            .skills
            .iter()
            .filter_map(|s| {
                Some((
                    SkillModule::try_from(i32::from(s.module)).ok()?,
                    u32::try_from(s.level).ok()?,
                ))
            })
            .collect(),
        credentials: a
            .credentials
            .iter()
            .filter_map(|c| ClinicalCredential::try_from(i32::from(*c)).ok())
            .collect(),
        availability: a.availability(),
        shifts: a.shifts.clone(),
        max_concurrent: u32::try_from(a.max_concurrent).unwrap_or(0),
        current_load: u32::try_from(a.current_load).unwrap_or(0),
        idle_since: a.idle_since,
    }
}

/// Every analyst covering `tenant` (directly or through `"*"`), as the
/// decision needs them, ordered by id. One query whatever their number:
/// the coverage index finds them, and their skills and shifts come
/// aggregated beside them. Coverage lists only `tenant` and `"*"` entries,
/// the only ones a decision for `tenant` looks at.
pub async fn candidates(
    conn: &mut PgConnection,
    tenant: &str,
) -> Result<Vec<AnalystFacts>, sqlx::Error> {
    let rows: Vec<CandidateFlat> = sqlx::query_as(concat!(
        "SELECT a.analyst_id, a.time_zone, a.credentials, a.availability, a.max_concurrent, a.current_load,
                a.idle_since, c.tenants AS coverage_tenants, c.facilities AS coverage_facilities,
                COALESCE(k.modules, '{}') AS skill_modules, COALESCE(k.levels, '{}') AS skill_levels,
                COALESCE(h.days, '{}') AS shift_days, COALESCE(h.starts, '{}') AS shift_starts,
                COALESCE(h.ends, '{}') AS shift_ends
           FROM (SELECT x.analyst_id, array_agg(x.tenant_id) AS tenants,
                        array_agg(array_to_string(x.facility_ids, ',')) AS facilities
                   FROM analyst_coverage x WHERE x.tenant_id IN ($1, '*')
                  GROUP BY x.analyst_id) c
           JOIN analysts a ON a.analyst_id = c.analyst_id",
        children_joins!(),
        " ORDER BY a.analyst_id"
    ))
    .bind(tenant)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(AnalystFacts::from).collect())
}

/// The API's view of an analyst at `now` (`on_shift` is computed, with the
/// same rule routing decides by).
/// Who an analyst is shown to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience<'a> {
    /// The vendor, or the analyst themselves: everything.
    Everything,
    /// A tenant's staff: the analyst as this tenant knows them. Coverage of
    /// other tenants is left out, and so are the contacts of anyone who also
    /// works for other tenants (the vendor's staff, reached through the
    /// vendor). Load and availability stay: they explain this tenant's
    /// queue, and say nothing about which tenant the load comes from.
    Tenant(&'a str),
}

/// An analyst as `audience` may see them.
pub fn to_proto(a: &AnalystRow, now: DateTime<Utc>, audience: Audience<'_>) -> pb::Analyst {
    let mut shown = to_proto_full(a, now);
    if let Audience::Tenant(t) = audience {
        shown
            .coverage
            .retain(|c| c.tenant_id == t || c.tenant_id == ALL_TENANTS);
        if !a.covers_only(t) {
            shown.email.clear();
            shown.phone.clear();
            shown.pager.clear();
        }
    }
    shown
}

fn to_proto_full(a: &AnalystRow, now: DateTime<Utc>) -> pb::Analyst {
    pb::Analyst {
        analyst_id: a.analyst_id.clone(),
        name: a.name.clone(),
        email: a.email.clone(),
        phone: a.phone.clone(),
        pager: a.pager.clone(),
        time_zone: a.time_zone.clone(),
        coverage: a
            .coverage
            .iter()
            .map(|c| pb::TenantCoverage {
                tenant_id: c.tenant_id.clone(),
                facility_ids: c.facility_ids.clone(),
            })
            .collect(),
        skills: a
            .skills
            .iter()
            .map(|s| pb::Skill {
                module: i32::from(s.module),
                level: u32::try_from(s.level).unwrap_or(0),
            })
            .collect(),
        credentials: a.credentials.iter().map(|c| i32::from(*c)).collect(),
        languages: a.languages.clone(),
        max_concurrent_tickets: u32::try_from(a.max_concurrent).unwrap_or(0),
        shifts: a.shifts.iter().map(shift_to_proto).collect(),
        availability: i32::from(a.availability),
        supervisor: a.supervisor,
        tier2: a.tier2,
        on_call: a.on_call,
        current_load: u32::try_from(a.current_load).unwrap_or(0),
        idle_since: Some(timestamp(a.idle_since)),
        version: u64::try_from(a.version).unwrap_or(0),
        on_shift: on_shift(&a.shifts, a.tz(), now),
        created_at: Some(timestamp(a.created_at)),
        updated_at: Some(timestamp(a.updated_at)),
    }
}

/// A shift as the API shows it.
pub fn shift_to_proto(s: &Shift) -> pb::Shift {
    pb::Shift {
        day_of_week: i32::from(s.day),
        start: format_hhmm(s.start_minute),
        end: format_hhmm(s.end_minute),
    }
}

/// The directory data other services keep a copy of (events).
pub fn analyst_info(a: &AnalystRow) -> wardline_proto::events::AnalystInfo {
    wardline_proto::events::AnalystInfo {
        analyst_id: a.analyst_id.clone(),
        name: a.name.clone(),
        email: a.email.clone(),
        phone: a.phone.clone(),
        pager: a.pager.clone(),
        tenants: a.coverage.iter().map(|c| c.tenant_id.clone()).collect(),
        supervisor: a.supervisor,
        on_call: a.on_call,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 15, 0, 0).unwrap() // Wednesday
    }

    fn row() -> AnalystRow {
        AnalystRow {
            analyst_id: "rn.jones".into(),
            name: "Rita Jones".into(),
            email: "rita@desk.example".into(),
            phone: "+13125550100".into(),
            pager: String::new(),
            time_zone: "America/Chicago".into(),
            coverage: vec![
                Coverage {
                    tenant_id: "stmarys".into(),
                    facility_ids: vec!["main".into(), "north".into()],
                },
                Coverage {
                    tenant_id: "lakeside".into(),
                    facility_ids: vec![],
                },
            ],
            skills: vec![SkillRow {
                module: 2,
                level: 4,
            }],
            credentials: vec![1],
            languages: vec!["en".into(), "es-MX".into()],
            max_concurrent: 3,
            shifts: vec![Shift {
                day: 3,
                start_minute: 7 * 60,
                end_minute: 19 * 60,
            }],
            availability: Availability::Available as i16,
            supervisor: true,
            tier2: false,
            on_call: true,
            current_load: 1,
            idle_since: now() - chrono::Duration::minutes(5),
            version: 7,
            created_at: now() - chrono::Duration::days(3),
            updated_at: now() - chrono::Duration::hours(1),
        }
    }

    #[test]
    fn proto_view_carries_everything_and_computes_on_shift() {
        let a = row();
        let p = to_proto(&a, now(), Audience::Everything); // 09:00 in Chicago on a Wednesday
        assert_eq!(p.analyst_id, "rn.jones");
        assert_eq!(p.coverage.len(), 2);
        assert_eq!(p.coverage[0].facility_ids, vec!["main", "north"]);
        assert_eq!(
            p.skills,
            vec![pb::Skill {
                module: 2,
                level: 4
            }]
        );
        assert_eq!(p.credentials, vec![ClinicalCredential::Rn as i32]);
        assert_eq!(p.max_concurrent_tickets, 3);
        assert_eq!(p.availability, Availability::Available as i32);
        assert_eq!(p.current_load, 1);
        assert_eq!(p.version, 7);
        assert!(p.on_shift);
        assert_eq!(
            p.shifts,
            vec![pb::Shift {
                day_of_week: 3,
                start: "07:00".into(),
                end: "19:00".into()
            }]
        );
        // 06:59 local: off shift.
        assert!(
            !to_proto(
                &a,
                now() - chrono::Duration::hours(2) - chrono::Duration::minutes(1),
                Audience::Everything
            )
            .on_shift
        );
    }

    #[test]
    fn a_tenant_sees_a_shared_analyst_through_its_own_tenant_only() {
        // rn.jones works for stmarys and lakeside: lakeside's staff see the
        // lakeside coverage, and no vendor contact.
        let p = to_proto(&row(), now(), Audience::Tenant("lakeside"));
        let tenants: Vec<&str> = p.coverage.iter().map(|c| c.tenant_id.as_str()).collect();
        assert_eq!(tenants, ["lakeside"]);
        assert_eq!((p.email.as_str(), p.phone.as_str()), ("", ""));
        assert_eq!(p.name, "Rita Jones");
        // An analyst of one hospital only is shown whole to that hospital.
        let mut own = row();
        own.coverage.truncate(1);
        let p = to_proto(&own, now(), Audience::Tenant("stmarys"));
        assert_eq!(p.email, "rita@desk.example");
        assert_eq!(p.coverage.len(), 1);
    }

    #[test]
    fn an_unknown_zone_falls_back_to_utc() {
        let a = AnalystRow {
            time_zone: "Mars/Olympus".into(),
            ..row()
        };
        assert_eq!(a.tz(), chrono_tz::UTC);
        // Wednesday 15:00 read in UTC is inside 07:00-19:00.
        assert!(to_proto(&a, now(), Audience::Everything).on_shift);
    }

    #[test]
    fn info_lists_the_covered_tenants_and_no_more() {
        let i = analyst_info(&row());
        assert_eq!(i.tenants, vec!["stmarys", "lakeside"]);
        assert!(i.supervisor && i.on_call);
        assert_eq!(i.phone, "+13125550100");
    }

    #[test]
    fn coverage_checks() {
        let a = row();
        assert!(a.covers("stmarys") && a.covers("lakeside") && !a.covers("other"));
        assert!(!a.covers_only("stmarys"));
        let only = AnalystRow {
            coverage: vec![Coverage {
                tenant_id: "stmarys".into(),
                facility_ids: vec![],
            }],
            ..row()
        };
        assert!(only.covers_only("stmarys") && !only.covers_only("lakeside"));
        let all = AnalystRow {
            coverage: vec![Coverage {
                tenant_id: "*".into(),
                facility_ids: vec![],
            }],
            ..row()
        };
        assert!(all.covers("anyone") && !all.covers_only("anyone"));
        assert!(
            !AnalystRow {
                coverage: vec![],
                ..row()
            }
            .covers_only("stmarys")
        );
    }

    #[test]
    fn aggregated_arrays_decode() {
        let c = coverage_of(
            vec!["*".into(), "stmarys".into()],
            vec![String::new(), "main,north".into()],
        );
        assert_eq!(c[0].facility_ids, Vec::<String>::new());
        assert_eq!(c[1].facility_ids, vec!["main", "north"]);
        let s = shifts_of(&[1, 7, 9], &[0, 1380, 0], &[60, 420, 60]);
        assert_eq!(s.len(), 3);
        assert_eq!(
            s[1],
            Shift {
                day: 7,
                start_minute: 1380,
                end_minute: 420
            }
        );
        assert!(shifts_of(&[1], &[-1], &[60]).is_empty());
    }

    #[test]
    fn candidate_facts_skip_unknown_codes() {
        let f = CandidateFlat {
            analyst_id: "x".into(),
            time_zone: "nowhere".into(),
            credentials: vec![1, 99],
            availability: 42,
            max_concurrent: 2,
            current_load: -1,
            idle_since: now(),
            coverage_tenants: vec!["stmarys".into()],
            coverage_facilities: vec!["main".into()],
            skill_modules: vec![2, 77],
            skill_levels: vec![3, 5],
            shift_days: vec![],
            shift_starts: vec![],
            shift_ends: vec![],
        };
        let a = AnalystFacts::from(f);
        assert_eq!(a.time_zone, chrono_tz::UTC);
        assert_eq!(a.credentials, vec![ClinicalCredential::Rn]);
        assert_eq!(a.availability, Availability::Offline);
        assert_eq!(a.skills, vec![(SkillModule::MedicationAdministration, 3)]);
        assert_eq!(
            a.coverage,
            vec![("stmarys".to_owned(), vec!["main".to_owned()])]
        );
        assert_eq!(a.current_load, 0);
    }
}

/// The queries against a real PostgreSQL (a fresh database per test).
#[cfg(test)]
mod db_tests {
    use super::*;
    use wardline_testkit::TestDb;

    async fn fresh(prefix: &str) -> (TestDb, sqlx::PgPool) {
        let db = TestDb::create(prefix).await;
        let pool = db.pool().await;
        wardline_kit::db::migrate(&pool, &crate::MIGRATOR)
            .await
            .expect("migrate");
        (db, pool)
    }

    fn analyst(id: &str, coverage: &[(&str, &[&str])]) -> AnalystRow {
        let now = Utc::now();
        AnalystRow {
            analyst_id: id.into(),
            name: format!("Analyst {id}"),
            email: String::new(),
            phone: String::new(),
            pager: String::new(),
            time_zone: "America/Chicago".into(),
            coverage: coverage
                .iter()
                .map(|(t, f)| Coverage {
                    tenant_id: (*t).into(),
                    facility_ids: f.iter().map(|x| (*x).to_owned()).collect(),
                })
                .collect(),
            skills: vec![
                SkillRow {
                    module: 2,
                    level: 4,
                },
                SkillRow {
                    module: 10,
                    level: 1,
                },
            ],
            credentials: vec![1],
            languages: vec!["en".into()],
            max_concurrent: 3,
            shifts: vec![Shift {
                day: 5,
                start_minute: 22 * 60,
                end_minute: 6 * 60,
            }],
            availability: Availability::Available as i16,
            supervisor: false,
            tier2: false,
            on_call: false,
            current_load: 0,
            idle_since: now,
            version: 0,
            created_at: now,
            updated_at: now,
        }
    }

    #[tokio::test]
    async fn an_upsert_replaces_the_directory_data_and_keeps_the_engines() {
        let (_db, pool) = fresh("routing_dir_upsert").await;
        let mut conn = pool.acquire().await.unwrap();
        let a = analyst("rn.jones", &[("stmarys", &["main", "north"]), ("*", &[])]);
        assert_eq!(upsert_analyst(&mut conn, &a).await.unwrap(), 1);
        let got = get_analyst(&mut conn, "rn.jones").await.unwrap().unwrap();
        assert_eq!(got.version, 1);
        assert_eq!(got.coverage.len(), 2);
        assert_eq!(got.coverage[0].tenant_id, "*");
        assert!(got.coverage[0].facility_ids.is_empty());
        assert_eq!(got.coverage[1].facility_ids, vec!["main", "north"]);
        assert_eq!(got.skills, a.skills);
        assert_eq!(got.shifts, a.shifts);
        assert_eq!(
            (got.credentials.clone(), got.languages.clone()),
            (a.credentials.clone(), a.languages.clone())
        );
        assert_eq!(got.availability, Availability::Available as i16);

        // The engine holds two tickets for them since a while.
        sqlx::query("UPDATE analysts SET current_load = 2, idle_since = now() - interval '1 hour' WHERE analyst_id = $1")
            .bind("rn.jones")
            .execute(&mut *conn)
            .await
            .unwrap();
        let held = get_analyst(&mut conn, "rn.jones").await.unwrap().unwrap();
        let mut b = analyst("rn.jones", &[("lakeside", &[])]);
        b.skills = vec![SkillRow {
            module: 4,
            level: 5,
        }];
        b.shifts.clear();
        b.availability = Availability::Offline as i16;
        b.max_concurrent = 5;
        assert_eq!(upsert_analyst(&mut conn, &b).await.unwrap(), 2);
        let got = get_analyst(&mut conn, "rn.jones").await.unwrap().unwrap();
        assert_eq!(got.version, 2);
        assert_eq!(got.coverage, b.coverage);
        assert_eq!(got.skills, b.skills);
        assert!(got.shifts.is_empty());
        assert_eq!(got.max_concurrent, 5);
        assert_eq!(
            got.availability,
            Availability::Available as i16,
            "availability is kept on update"
        );
        assert_eq!(got.current_load, 2);
        assert_eq!(got.idle_since, held.idle_since);
        assert_eq!(got.created_at, held.created_at);
        assert!(get_analyst(&mut conn, "nobody").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn availability_restarts_the_idle_clock_only_for_an_idle_return() {
        let (_db, pool) = fresh("routing_dir_avail").await;
        let mut conn = pool.acquire().await.unwrap();
        upsert_analyst(&mut conn, &analyst("a1", &[("stmarys", &[])]))
            .await
            .unwrap();
        sqlx::query("UPDATE analysts SET idle_since = now() - interval '1 hour', current_load = 1")
            .execute(&mut *conn)
            .await
            .unwrap();
        let start = get_analyst(&mut conn, "a1").await.unwrap().unwrap();
        let away = set_availability(&mut conn, "a1", Availability::Away)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((away.availability(), away.version), (Availability::Away, 2));
        assert_eq!(away.idle_since, start.idle_since);
        // Back while still holding a ticket: the idle clock keeps running.
        let back = set_availability(&mut conn, "a1", Availability::Available)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(back.idle_since, start.idle_since);
        set_availability(&mut conn, "a1", Availability::Busy)
            .await
            .unwrap();
        sqlx::query("UPDATE analysts SET current_load = 0")
            .execute(&mut *conn)
            .await
            .unwrap();
        let back = set_availability(&mut conn, "a1", Availability::Available)
            .await
            .unwrap()
            .unwrap();
        assert!(back.idle_since > start.idle_since);
        assert_eq!(back.version, 5);
        assert!(
            set_availability(&mut conn, "nobody", Availability::Available)
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn shifts_are_replaced_under_a_lock() {
        let (_db, pool) = fresh("routing_dir_shifts").await;
        let mut tx = wardline_kit::db::begin(&pool, wardline_kit::db::Scope::AllTenants)
            .await
            .unwrap();
        upsert_analyst(&mut tx, &analyst("a1", &[("stmarys", &[])]))
            .await
            .unwrap();
        let locked = lock_analyst(&mut tx, "a1").await.unwrap().unwrap();
        assert_eq!(locked.version, 1);
        let shifts = [
            Shift {
                day: 1,
                start_minute: 420,
                end_minute: 1140,
            },
            Shift {
                day: 2,
                start_minute: 420,
                end_minute: 1140,
            },
        ];
        assert_eq!(set_shifts(&mut tx, "a1", &shifts).await.unwrap(), Some(2));
        assert_eq!(
            get_analyst(&mut tx, "a1").await.unwrap().unwrap().shifts,
            shifts
        );
        assert_eq!(set_shifts(&mut tx, "a1", &[]).await.unwrap(), Some(3));
        assert!(
            get_analyst(&mut tx, "a1")
                .await
                .unwrap()
                .unwrap()
                .shifts
                .is_empty()
        );
        assert_eq!(set_shifts(&mut tx, "nobody", &shifts).await.unwrap(), None);
        assert!(lock_analyst(&mut tx, "nobody").await.unwrap().is_none());
        tx.commit().await.unwrap();
    }

    #[tokio::test]
    async fn listing_filters_and_pages_by_id() {
        let (_db, pool) = fresh("routing_dir_list").await;
        let mut conn = pool.acquire().await.unwrap();
        let mut vendor = analyst("v.all", &[("*", &[])]);
        vendor.supervisor = true;
        vendor.credentials = vec![];
        upsert_analyst(&mut conn, &vendor).await.unwrap();
        let mut busy = analyst("b.stm", &[("stmarys", &[])]);
        busy.availability = Availability::Busy as i16;
        busy.skills = vec![SkillRow {
            module: 2,
            level: 2,
        }];
        upsert_analyst(&mut conn, &busy).await.unwrap();
        upsert_analyst(&mut conn, &analyst("a.stm", &[("stmarys", &["main"])]))
            .await
            .unwrap();
        upsert_analyst(&mut conn, &analyst("c.lake", &[("lakeside", &[])]))
            .await
            .unwrap();
        let ids =
            |rows: Vec<AnalystRow>| rows.into_iter().map(|r| r.analyst_id).collect::<Vec<_>>();
        let all = AnalystFilter::default();
        assert_eq!(
            ids(list_analysts(&mut conn, &all, 10).await.unwrap()),
            ["a.stm", "b.stm", "c.lake", "v.all"]
        );
        let stm = AnalystFilter {
            tenant: Some("stmarys".into()),
            ..all.clone()
        };
        assert_eq!(
            ids(list_analysts(&mut conn, &stm, 10).await.unwrap()),
            ["a.stm", "b.stm", "v.all"]
        );
        let page = AnalystFilter {
            after: Some("a.stm".into()),
            ..stm.clone()
        };
        assert_eq!(
            ids(list_analysts(&mut conn, &page, 1).await.unwrap()),
            ["b.stm"]
        );
        let avail = AnalystFilter {
            availabilities: vec![Availability::Busy as i16],
            ..stm.clone()
        };
        assert_eq!(
            ids(list_analysts(&mut conn, &avail, 10).await.unwrap()),
            ["b.stm"]
        );
        let skilled = AnalystFilter {
            skill_module: Some(2),
            min_skill_level: 3,
            ..stm.clone()
        };
        assert_eq!(
            ids(list_analysts(&mut conn, &skilled, 10).await.unwrap()),
            ["a.stm", "v.all"]
        );
        let any_module = AnalystFilter {
            min_skill_level: 4,
            ..stm.clone()
        };
        assert_eq!(
            ids(list_analysts(&mut conn, &any_module, 10).await.unwrap()),
            ["a.stm", "v.all"]
        );
        let rn = AnalystFilter {
            credential: Some(1),
            ..stm.clone()
        };
        assert_eq!(
            ids(list_analysts(&mut conn, &rn, 10).await.unwrap()),
            ["a.stm", "b.stm"]
        );
        let sup = AnalystFilter {
            supervisors_only: true,
            ..all.clone()
        };
        assert_eq!(
            ids(list_analysts(&mut conn, &sup, 10).await.unwrap()),
            ["v.all"]
        );
    }

    #[tokio::test]
    async fn candidates_are_those_covering_the_tenant_directly_or_by_wildcard() {
        let (_db, pool) = fresh("routing_dir_cand").await;
        let mut conn = pool.acquire().await.unwrap();
        let mut zoned = analyst(
            "a.stm",
            &[("stmarys", &["main", "north"]), ("lakeside", &[])],
        );
        zoned.time_zone = "Not/AZone".into(); // never stored by the edge; must not break a decision
        upsert_analyst(&mut conn, &zoned).await.unwrap();
        upsert_analyst(&mut conn, &analyst("v.all", &[("*", &[])]))
            .await
            .unwrap();
        upsert_analyst(&mut conn, &analyst("c.lake", &[("lakeside", &[])]))
            .await
            .unwrap();
        let mut bare = analyst("d.stm", &[("stmarys", &[]), ("*", &[])]);
        bare.skills.clear();
        bare.shifts.clear();
        bare.credentials.clear();
        upsert_analyst(&mut conn, &bare).await.unwrap();
        sqlx::query("UPDATE analysts SET current_load = 2 WHERE analyst_id = 'a.stm'")
            .execute(&mut *conn)
            .await
            .unwrap();
        let c = candidates(&mut conn, "stmarys").await.unwrap();
        let ids: Vec<&str> = c.iter().map(|a| a.analyst_id.as_str()).collect();
        assert_eq!(ids, ["a.stm", "d.stm", "v.all"]);
        let a = &c[0];
        assert_eq!(a.time_zone, chrono_tz::UTC);
        assert_eq!(
            a.coverage,
            vec![(
                "stmarys".to_owned(),
                vec!["main".to_owned(), "north".to_owned()]
            )]
        );
        assert_eq!(
            a.skills,
            vec![
                (SkillModule::MedicationAdministration, 4),
                (SkillModule::Printing, 1)
            ]
        );
        assert_eq!(a.credentials, vec![ClinicalCredential::Rn]);
        assert_eq!(a.availability, Availability::Available);
        assert_eq!((a.current_load, a.max_concurrent), (2, 3));
        assert_eq!(a.shifts.len(), 1);
        let d = &c[1];
        assert_eq!(d.coverage.len(), 2);
        assert!(d.skills.is_empty() && d.shifts.is_empty() && d.credentials.is_empty());
        assert_eq!(c[2].time_zone.name(), "America/Chicago");
        assert_eq!(candidates(&mut conn, "elsewhere").await.unwrap().len(), 2);
    }
}
