//! Category rules and SLA targets per tenant: the shipped defaults (in
//! [`crate::domain`]) unless the tenant has stored its own.
//!
//! What must hold:
//! - A tenant without an override gets the default, computed, never stored:
//!   changing a shipped default changes it for every tenant that kept it.
//! - A rule's required skills keep their order (the first is the primary
//!   skill candidates are ranked by): modules and levels are stored as two
//!   parallel arrays.
//! - An override's version grows by one per change; resetting deletes the
//!   override, so the default (version 0) applies again.
//! - The conversions from the API check what they convert and name the
//!   offending field relative to the message (`required_skills[1].min_level`);
//!   the edge prefixes the request field.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use wardline_kit::events::timestamp;
use wardline_proto::routing as pb;

use crate::domain::rules::{CATEGORIES, Rule, default_rule};
use crate::domain::sla::Targets;
use crate::domain::{Category, ClinicalCredential, CredentialPolicy, Priority, SkillModule};

/// When a tenant's override last changed; `None` for a shipped default.
pub type Changed = Option<DateTime<Utc>>;

#[derive(sqlx::FromRow)]
struct RuleRow {
    category: i16,
    required_modules: Vec<i16>,
    min_levels: Vec<i16>,
    credential_policy: i16,
    accepted_credentials: Vec<i16>,
    version: i64,
    updated_at: DateTime<Utc>,
}

impl RuleRow {
    /// The stored override as a rule; `None` for a category this build does
    /// not know (an override written by a newer version).
    fn rule(&self) -> Option<Rule> {
        let category = Category::try_from(i32::from(self.category)).ok()?;
        Some(Rule {
            category,
            required: self
                .required_modules
                .iter()
                .zip(&self.min_levels)
                .filter_map(|(m, l)| {
                    Some((
                        SkillModule::try_from(i32::from(*m)).ok()?,
                        u32::try_from(*l).ok()?,
                    ))
                })
                .collect(),
            credential_policy: CredentialPolicy::try_from(i32::from(self.credential_policy))
                .unwrap_or(CredentialPolicy::None),
            accepted_credentials: self
                .accepted_credentials
                .iter()
                .filter_map(|c| ClinicalCredential::try_from(i32::from(*c)).ok())
                .collect(),
            tenant_override: true,
            version: u64::try_from(self.version).unwrap_or(0),
        })
    }
}

/// The rule in force for `category` in `tenant`: the tenant's override, or
/// the shipped default.
pub async fn effective_rule(
    conn: &mut PgConnection,
    tenant: &str,
    category: Category,
) -> Result<Rule, sqlx::Error> {
    let row: Option<RuleRow> = sqlx::query_as(
        "SELECT category, required_modules, min_levels, credential_policy, accepted_credentials, version, updated_at
           FROM category_rules WHERE tenant_id = $1 AND category = $2",
    )
    .bind(tenant)
    .bind(category as i16)
    .fetch_optional(conn)
    .await?;
    Ok(row
        .and_then(|r| r.rule())
        .unwrap_or_else(|| default_rule(category)))
}

/// The rule in force for every category (in [`CATEGORIES`] order), with
/// when each override last changed.
pub async fn effective_rules_changed(
    conn: &mut PgConnection,
    tenant: &str,
) -> Result<Vec<(Rule, Changed)>, sqlx::Error> {
    let rows: Vec<RuleRow> = sqlx::query_as(
        "SELECT category, required_modules, min_levels, credential_policy, accepted_credentials, version, updated_at
           FROM category_rules WHERE tenant_id = $1",
    )
    .bind(tenant)
    .fetch_all(conn)
    .await?;
    Ok(CATEGORIES
        .iter()
        .map(|c| {
            rows.iter()
                .filter_map(|r| Some((r.rule()?, r.updated_at)))
                .find(|(r, _)| r.category == *c)
                .map(|(r, at)| (r, Some(at)))
                .unwrap_or_else(|| (default_rule(*c), None))
        })
        .collect())
}

/// The rule in force for every category, in [`CATEGORIES`] order.
pub async fn effective_rules(
    conn: &mut PgConnection,
    tenant: &str,
) -> Result<Vec<Rule>, sqlx::Error> {
    Ok(effective_rules_changed(conn, tenant)
        .await?
        .into_iter()
        .map(|(r, _)| r)
        .collect())
}

/// Locks the tenant's override of `category` until the transaction ends
/// and returns its version (0 when the default applies, nothing locked).
pub async fn lock_rule_version(
    conn: &mut PgConnection,
    tenant: &str,
    category: Category,
) -> Result<u64, sqlx::Error> {
    let v: Option<i64> = sqlx::query_scalar(
        "SELECT version FROM category_rules WHERE tenant_id = $1 AND category = $2 FOR UPDATE",
    )
    .bind(tenant)
    .bind(category as i16)
    .fetch_optional(conn)
    .await?;
    Ok(v.and_then(|v| u64::try_from(v).ok()).unwrap_or(0))
}

/// Stores `rule` as the tenant's override of its category (version + 1)
/// and returns it as stored, with when it changed.
pub async fn set_rule(
    conn: &mut PgConnection,
    tenant: &str,
    rule: &Rule,
) -> Result<(Rule, DateTime<Utc>), sqlx::Error> {
    let modules: Vec<i16> = rule.required.iter().map(|(m, _)| *m as i16).collect();
    let levels: Vec<i16> = rule
        .required
        .iter()
        .map(|(_, l)| i16::try_from(*l).unwrap_or(i16::MAX))
        .collect();
    let accepted: Vec<i16> = rule
        .accepted_credentials
        .iter()
        .map(|c| *c as i16)
        .collect();
    let (version, at): (i64, DateTime<Utc>) = sqlx::query_as(
        "INSERT INTO category_rules (tenant_id, category, required_modules, min_levels, credential_policy,
                accepted_credentials)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (tenant_id, category) DO UPDATE SET
                required_modules = EXCLUDED.required_modules, min_levels = EXCLUDED.min_levels,
                credential_policy = EXCLUDED.credential_policy,
                accepted_credentials = EXCLUDED.accepted_credentials,
                version = category_rules.version + 1, updated_at = now()
         RETURNING version, updated_at",
    )
    .bind(tenant)
    .bind(rule.category as i16)
    .bind(&modules)
    .bind(&levels)
    .bind(rule.credential_policy as i16)
    .bind(&accepted)
    .fetch_one(conn)
    .await?;
    let stored = Rule {
        tenant_override: true,
        version: u64::try_from(version).unwrap_or(0),
        ..rule.clone()
    };
    Ok((stored, at))
}

/// Drops the tenant's override of `category`; true when there was one.
pub async fn reset_rule(
    conn: &mut PgConnection,
    tenant: &str,
    category: Category,
) -> Result<bool, sqlx::Error> {
    let deleted = sqlx::query("DELETE FROM category_rules WHERE tenant_id = $1 AND category = $2")
        .bind(tenant)
        .bind(category as i16)
        .execute(conn)
        .await?
        .rows_affected();
    Ok(deleted > 0)
}

#[derive(sqlx::FromRow)]
struct TargetsRow {
    response_minutes: Vec<i32>,
    resolution_minutes: Vec<i32>,
    ack_timeout_seconds: i32,
    pause_resolution_on_hold: bool,
    version: i64,
    updated_at: DateTime<Utc>,
}

fn four(v: &[i32]) -> Option<[u32; 4]> {
    let v: Vec<u32> = v
        .iter()
        .map(|m| u32::try_from(*m).ok())
        .collect::<Option<_>>()?;
    v.try_into().ok()
}

impl TargetsRow {
    /// `None` when the row is unusable (never written by this service).
    fn targets(&self) -> Option<Targets> {
        Some(Targets {
            response_minutes: four(&self.response_minutes)?,
            resolution_minutes: four(&self.resolution_minutes)?,
            ack_timeout_seconds: u32::try_from(self.ack_timeout_seconds).ok()?,
            pause_resolution_on_hold: self.pause_resolution_on_hold,
            tenant_override: true,
            version: u64::try_from(self.version).unwrap_or(0),
        })
    }
}

/// The tenant's targets (or the shipped defaults) with when they changed.
pub async fn targets_changed(
    conn: &mut PgConnection,
    tenant: &str,
) -> Result<(Targets, Changed), sqlx::Error> {
    let row: Option<TargetsRow> = sqlx::query_as(
        "SELECT response_minutes, resolution_minutes, ack_timeout_seconds, pause_resolution_on_hold, version,
                updated_at
           FROM sla_targets WHERE tenant_id = $1",
    )
    .bind(tenant)
    .fetch_optional(conn)
    .await?;
    Ok(match row {
        Some(r) => match r.targets() {
            Some(t) => (t, Some(r.updated_at)),
            None => {
                tracing::warn!(
                    tenant,
                    "stored SLA targets are unusable; the defaults apply"
                );
                (Targets::default(), None)
            }
        },
        None => (Targets::default(), None),
    })
}

/// The tenant's targets, or the shipped defaults.
pub async fn targets(conn: &mut PgConnection, tenant: &str) -> Result<Targets, sqlx::Error> {
    Ok(targets_changed(conn, tenant).await?.0)
}

/// Locks the tenant's targets row until the transaction ends and returns
/// its version (0 when the defaults apply, nothing locked).
pub async fn lock_targets_version(
    conn: &mut PgConnection,
    tenant: &str,
) -> Result<u64, sqlx::Error> {
    let v: Option<i64> =
        sqlx::query_scalar("SELECT version FROM sla_targets WHERE tenant_id = $1 FOR UPDATE")
            .bind(tenant)
            .fetch_optional(conn)
            .await?;
    Ok(v.and_then(|v| u64::try_from(v).ok()).unwrap_or(0))
}

/// Stores the tenant's targets (version + 1) and returns them as stored,
/// with when they changed. Timers already running keep their deadlines.
pub async fn set_targets(
    conn: &mut PgConnection,
    tenant: &str,
    t: &Targets,
) -> Result<(Targets, DateTime<Utc>), sqlx::Error> {
    let to_i32 = |v: &[u32; 4]| -> Vec<i32> {
        v.iter()
            .map(|m| i32::try_from(*m).unwrap_or(i32::MAX))
            .collect()
    };
    let (version, at): (i64, DateTime<Utc>) = sqlx::query_as(
        "INSERT INTO sla_targets (tenant_id, response_minutes, resolution_minutes, ack_timeout_seconds,
                pause_resolution_on_hold)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (tenant_id) DO UPDATE SET
                response_minutes = EXCLUDED.response_minutes,
                resolution_minutes = EXCLUDED.resolution_minutes,
                ack_timeout_seconds = EXCLUDED.ack_timeout_seconds,
                pause_resolution_on_hold = EXCLUDED.pause_resolution_on_hold,
                version = sla_targets.version + 1, updated_at = now()
         RETURNING version, updated_at",
    )
    .bind(tenant)
    .bind(to_i32(&t.response_minutes))
    .bind(to_i32(&t.resolution_minutes))
    .bind(i32::try_from(t.ack_timeout_seconds).unwrap_or(i32::MAX))
    .bind(t.pause_resolution_on_hold)
    .fetch_one(conn)
    .await?;
    let stored = Targets {
        tenant_override: true,
        version: u64::try_from(version).unwrap_or(0),
        ..t.clone()
    };
    Ok((stored, at))
}

// ------------------------------------------------------------ conversions

fn source(tenant_override: bool) -> i32 {
    if tenant_override {
        pb::RuleSource::Tenant as i32
    } else {
        pb::RuleSource::Default as i32
    }
}

/// A rule as the API (and recorded explanations) show it; `updated_at`
/// unset (see [`rule_to_proto_changed`]).
pub fn rule_to_proto(rule: &Rule) -> pb::CategoryRule {
    pb::CategoryRule {
        category: rule.category as i32,
        required_skills: rule
            .required
            .iter()
            .map(|(m, l)| pb::SkillRequirement {
                module: *m as i32,
                min_level: *l,
            })
            .collect(),
        credential_policy: rule.credential_policy as i32,
        accepted_credentials: rule
            .accepted_credentials
            .iter()
            .map(|c| *c as i32)
            .collect(),
        source: source(rule.tenant_override),
        version: rule.version,
        updated_at: None,
    }
}

/// A rule with when its override last changed.
pub fn rule_to_proto_changed(rule: &Rule, changed: Changed) -> pb::CategoryRule {
    pb::CategoryRule {
        updated_at: changed.map(timestamp),
        ..rule_to_proto(rule)
    }
}

fn known<E: TryFrom<i32>>(value: i32, field: &str) -> Result<E, String> {
    E::try_from(value).map_err(|_| format!("{field}: unknown value {value}"))
}

/// A category from the API: known and not UNSPECIFIED.
pub fn category_from_proto(value: i32, field: &str) -> Result<Category, String> {
    match known::<Category>(value, field)? {
        Category::Unspecified => Err(format!("{field}: required")),
        c => Ok(c),
    }
}

/// A skill module from the API: known and not UNSPECIFIED.
pub fn module_from_proto(value: i32, field: &str) -> Result<SkillModule, String> {
    match known::<SkillModule>(value, field)? {
        SkillModule::Unspecified => Err(format!("{field}: required")),
        m => Ok(m),
    }
}

/// A clinical credential from the API: known and not UNSPECIFIED.
pub fn credential_from_proto(value: i32, field: &str) -> Result<ClinicalCredential, String> {
    match known::<ClinicalCredential>(value, field)? {
        ClinicalCredential::Unspecified => Err(format!("{field}: required (not UNSPECIFIED)")),
        c => Ok(c),
    }
}

/// A tenant's rule from the API, checked; errors name the field relative
/// to `CategoryRule`. Output-only fields are ignored.
pub fn rule_from_proto(p: &pb::CategoryRule) -> Result<Rule, String> {
    let category = category_from_proto(p.category, "category")?;
    let mut required: Vec<(SkillModule, u32)> = Vec::with_capacity(p.required_skills.len());
    for (i, s) in p.required_skills.iter().enumerate() {
        let module = module_from_proto(s.module, &format!("required_skills[{i}].module"))?;
        if !(1..=5).contains(&s.min_level) {
            return Err(format!("required_skills[{i}].min_level: 1-5"));
        }
        if required.iter().any(|(m, _)| *m == module) {
            return Err(format!("required_skills[{i}].module: duplicate"));
        }
        required.push((module, s.min_level));
    }
    let credential_policy =
        match known::<CredentialPolicy>(p.credential_policy, "credential_policy")? {
            CredentialPolicy::Unspecified => {
                return Err(
                    "credential_policy: required (none, when caller clinical or always)".into(),
                );
            }
            c => c,
        };
    let mut accepted: Vec<ClinicalCredential> = Vec::with_capacity(p.accepted_credentials.len());
    for (i, c) in p.accepted_credentials.iter().enumerate() {
        let c = credential_from_proto(*c, &format!("accepted_credentials[{i}]"))?;
        if accepted.contains(&c) {
            return Err(format!("accepted_credentials[{i}]: duplicate"));
        }
        accepted.push(c);
    }
    Ok(Rule {
        category,
        required,
        credential_policy,
        accepted_credentials: accepted,
        tenant_override: true,
        version: 0,
    })
}

const PRIORITIES: [Priority; 4] = [Priority::P1, Priority::P2, Priority::P3, Priority::P4];

/// Targets as the API shows them (P1 first).
pub fn targets_to_proto(tenant: &str, t: &Targets, changed: Changed) -> pb::SlaTargets {
    pb::SlaTargets {
        tenant_id: tenant.to_owned(),
        targets: PRIORITIES
            .iter()
            .enumerate()
            .map(|(i, p)| pb::PriorityTargets {
                priority: *p as i32,
                response_minutes: t.response_minutes[i],
                resolution_minutes: t.resolution_minutes[i],
            })
            .collect(),
        ack_timeout_seconds: t.ack_timeout_seconds,
        pause_resolution_on_hold: t.pause_resolution_on_hold,
        source: source(t.tenant_override),
        version: t.version,
        updated_at: changed.map(timestamp),
    }
}

/// A tenant's targets from the API, checked: each of P1-P4 exactly once,
/// then [`Targets::validate`]. Errors name the field relative to
/// `SlaTargets`. Output-only fields are ignored.
pub fn targets_from_proto(p: &pb::SlaTargets) -> Result<Targets, String> {
    let mut seen = [false; 4];
    let mut t = Targets {
        tenant_override: true,
        version: 0,
        ..Targets::default()
    };
    for (i, e) in p.targets.iter().enumerate() {
        let slot = match Priority::try_from(e.priority) {
            Ok(Priority::P1) => 0,
            Ok(Priority::P2) => 1,
            Ok(Priority::P3) => 2,
            Ok(Priority::P4) => 3,
            Ok(Priority::Unspecified) | Err(_) => {
                return Err(format!("targets[{i}].priority: P1, P2, P3 or P4"));
            }
        };
        if seen[slot] {
            return Err(format!("targets[{i}].priority: P{} given twice", slot + 1));
        }
        seen[slot] = true;
        t.response_minutes[slot] = e.response_minutes;
        t.resolution_minutes[slot] = e.resolution_minutes;
    }
    if let Some(missing) = seen.iter().position(|s| !s) {
        return Err(format!(
            "targets: one entry for each of P1, P2, P3 and P4 (P{} missing)",
            missing + 1
        ));
    }
    t.ack_timeout_seconds = p.ack_timeout_seconds;
    t.pause_resolution_on_hold = p.pause_resolution_on_hold;
    t.validate()?;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proto_rule() -> pb::CategoryRule {
        pb::CategoryRule {
            category: Category::MedicationAdministration as i32,
            required_skills: vec![
                pb::SkillRequirement {
                    module: SkillModule::MedicationAdministration as i32,
                    min_level: 3,
                },
                pb::SkillRequirement {
                    module: SkillModule::Orders as i32,
                    min_level: 1,
                },
            ],
            credential_policy: CredentialPolicy::Always as i32,
            accepted_credentials: vec![
                ClinicalCredential::Rn as i32,
                ClinicalCredential::Pharmd as i32,
            ],
            ..Default::default()
        }
    }

    #[test]
    fn rules_round_trip_and_keep_the_primary_skill_first() {
        let r = rule_from_proto(&proto_rule()).unwrap();
        assert_eq!(r.required[0], (SkillModule::MedicationAdministration, 3));
        assert_eq!(r.required[1], (SkillModule::Orders, 1));
        assert!(r.tenant_override);
        let back = rule_to_proto(&Rule { version: 4, ..r });
        assert_eq!(back.required_skills, proto_rule().required_skills);
        assert_eq!(back.accepted_credentials, proto_rule().accepted_credentials);
        assert_eq!(back.source, pb::RuleSource::Tenant as i32);
        assert_eq!(back.version, 4);
        let d = rule_to_proto(&default_rule(Category::Printing));
        assert_eq!(d.source, pb::RuleSource::Default as i32);
        assert_eq!(d.version, 0);
        assert!(d.updated_at.is_none());
        let at = Utc::now();
        assert_eq!(
            rule_to_proto_changed(&default_rule(Category::Printing), Some(at)).updated_at,
            Some(timestamp(at))
        );
    }

    #[test]
    fn stored_rules_decode_in_order() {
        let row = RuleRow {
            category: Category::Results as i16,
            required_modules: vec![4, 1],
            min_levels: vec![2, 5],
            credential_policy: CredentialPolicy::WhenCallerClinical as i16,
            accepted_credentials: vec![2],
            version: 3,
            updated_at: Utc::now(),
        };
        let r = row.rule().unwrap();
        assert_eq!(
            r.required,
            vec![(SkillModule::Results, 2), (SkillModule::Orders, 5)]
        );
        assert_eq!(r.accepted_credentials, vec![ClinicalCredential::Md]);
        assert_eq!((r.version, r.tenant_override), (3, true));
        assert!(
            RuleRow {
                category: 99,
                ..row
            }
            .rule()
            .is_none()
        );
    }

    #[test]
    fn bad_rules_name_the_field() {
        type Change = Box<dyn Fn(&mut pb::CategoryRule)>;
        fn change(f: impl Fn(&mut pb::CategoryRule) + 'static) -> Change {
            Box::new(f)
        }
        let cases: Vec<(Change, &str)> = vec![
            (change(|r| r.category = 0), "category: required"),
            (change(|r| r.category = 99), "category: unknown value 99"),
            (
                change(|r| r.required_skills[1].module = 0),
                "required_skills[1].module: required",
            ),
            (
                change(|r| r.required_skills[0].module = 42),
                "required_skills[0].module: unknown value 42",
            ),
            (
                change(|r| r.required_skills[0].min_level = 0),
                "required_skills[0].min_level: 1-5",
            ),
            (
                change(|r| r.required_skills[1].min_level = 6),
                "required_skills[1].min_level: 1-5",
            ),
            (
                change(|r| {
                    r.required_skills[1].module = SkillModule::MedicationAdministration as i32
                }),
                "required_skills[1].module: duplicate",
            ),
            (
                change(|r| r.credential_policy = 0),
                "credential_policy: required",
            ),
            (
                change(|r| r.credential_policy = 9),
                "credential_policy: unknown value 9",
            ),
            (
                change(|r| r.accepted_credentials[1] = 0),
                "accepted_credentials[1]: required",
            ),
            (
                change(|r| r.accepted_credentials[0] = 50),
                "accepted_credentials[0]: unknown value 50",
            ),
            (
                change(|r| r.accepted_credentials[1] = ClinicalCredential::Rn as i32),
                "accepted_credentials[1]: duplicate",
            ),
        ];
        for (change, expected) in cases {
            let mut r = proto_rule();
            change(&mut r);
            let e = rule_from_proto(&r).unwrap_err();
            assert!(e.starts_with(expected), "{e} should start with {expected}");
        }
        // No skills and any credential are fine.
        let mut r = proto_rule();
        r.required_skills.clear();
        r.accepted_credentials.clear();
        assert!(rule_from_proto(&r).unwrap().required.is_empty());
    }

    fn proto_targets() -> pb::SlaTargets {
        targets_to_proto("stmarys", &Targets::default(), None)
    }

    #[test]
    fn targets_round_trip_in_any_order() {
        let mut p = proto_targets();
        assert_eq!(p.targets.len(), 4);
        assert_eq!(p.targets[0].priority, Priority::P1 as i32);
        assert_eq!(p.source, pb::RuleSource::Default as i32);
        p.targets.reverse();
        p.targets[0].resolution_minutes = 5000; // P4
        p.ack_timeout_seconds = 300;
        p.pause_resolution_on_hold = true;
        let t = targets_from_proto(&p).unwrap();
        assert_eq!(t.resolution_minutes, [240, 480, 1440, 5000]);
        assert_eq!(t.response_minutes, Targets::default().response_minutes);
        assert_eq!(t.ack_timeout_seconds, 300);
        assert!(t.pause_resolution_on_hold && t.tenant_override);
        let back = targets_to_proto("stmarys", &Targets { version: 2, ..t }, Some(Utc::now()));
        assert_eq!(back.targets[3].resolution_minutes, 5000);
        assert_eq!(
            (back.version, back.source),
            (2, pb::RuleSource::Tenant as i32)
        );
        assert!(back.updated_at.is_some());
    }

    #[test]
    fn targets_need_each_priority_once() {
        let mut p = proto_targets();
        p.targets.pop();
        assert!(
            targets_from_proto(&p)
                .unwrap_err()
                .starts_with("targets: one entry for each")
        );
        let mut p = proto_targets();
        p.targets[3].priority = Priority::P2 as i32;
        assert_eq!(
            targets_from_proto(&p).unwrap_err(),
            "targets[3].priority: P2 given twice"
        );
        let mut p = proto_targets();
        p.targets[1].priority = 0;
        assert!(
            targets_from_proto(&p)
                .unwrap_err()
                .starts_with("targets[1].priority")
        );
        let mut p = proto_targets();
        p.targets.push(p.targets[0]);
        assert!(
            targets_from_proto(&p)
                .unwrap_err()
                .starts_with("targets[4].priority")
        );
        let mut p = proto_targets();
        p.targets[1].response_minutes = 0;
        assert!(
            targets_from_proto(&p)
                .unwrap_err()
                .starts_with("targets[P2].response_minutes")
        );
        let mut p = proto_targets();
        p.ack_timeout_seconds = 0;
        assert!(
            targets_from_proto(&p)
                .unwrap_err()
                .starts_with("ack_timeout_seconds")
        );
    }

    #[test]
    fn stored_targets_decode() {
        let row = TargetsRow {
            response_minutes: vec![10, 20, 30, 40],
            resolution_minutes: vec![100, 200, 300, 400],
            ack_timeout_seconds: 60,
            pause_resolution_on_hold: false,
            version: 5,
            updated_at: Utc::now(),
        };
        let t = row.targets().unwrap();
        assert_eq!(t.response_minutes, [10, 20, 30, 40]);
        assert_eq!((t.version, t.tenant_override), (5, true));
        assert!(
            TargetsRow {
                response_minutes: vec![1, 2, 3],
                ..row
            }
            .targets()
            .is_none()
        );
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

    #[tokio::test]
    async fn overrides_apply_per_tenant_and_reset_to_the_default() {
        let (_db, pool) = fresh("routing_policy_rules").await;
        let mut conn = pool.acquire().await.unwrap();
        let cat = Category::MedicationAdministration;
        assert_eq!(
            effective_rule(&mut conn, "stmarys", cat).await.unwrap(),
            default_rule(cat)
        );
        assert_eq!(
            lock_rule_version(&mut conn, "stmarys", cat).await.unwrap(),
            0
        );
        let mut rule = rule_from_proto(&tests_rule()).unwrap();
        let (stored, _) = set_rule(&mut conn, "stmarys", &rule).await.unwrap();
        assert_eq!((stored.version, stored.tenant_override), (1, true));
        assert_eq!(
            effective_rule(&mut conn, "stmarys", cat).await.unwrap(),
            stored
        );
        assert_eq!(
            effective_rule(&mut conn, "lakeside", cat).await.unwrap(),
            default_rule(cat)
        );
        rule.required.reverse();
        let (stored, at) = set_rule(&mut conn, "stmarys", &rule).await.unwrap();
        assert_eq!(stored.version, 2);
        assert_eq!(
            effective_rule(&mut conn, "stmarys", cat)
                .await
                .unwrap()
                .required,
            rule.required
        );
        assert_eq!(
            lock_rule_version(&mut conn, "stmarys", cat).await.unwrap(),
            2
        );
        let all = effective_rules_changed(&mut conn, "stmarys").await.unwrap();
        assert_eq!(all.len(), CATEGORIES.len());
        for ((r, changed), c) in all.iter().zip(CATEGORIES) {
            assert_eq!(r.category, c);
            assert_eq!(r.tenant_override, c == cat);
            assert_eq!(changed.is_some(), c == cat);
        }
        assert_eq!(all[1].1, Some(at));
        assert_eq!(
            effective_rules(&mut conn, "stmarys").await.unwrap()[1],
            stored
        );
        assert!(reset_rule(&mut conn, "stmarys", cat).await.unwrap());
        assert!(!reset_rule(&mut conn, "stmarys", cat).await.unwrap());
        assert_eq!(
            effective_rule(&mut conn, "stmarys", cat).await.unwrap(),
            default_rule(cat)
        );
    }

    fn tests_rule() -> pb::CategoryRule {
        pb::CategoryRule {
            category: Category::MedicationAdministration as i32,
            required_skills: vec![
                pb::SkillRequirement {
                    module: SkillModule::MedicationAdministration as i32,
                    min_level: 3,
                },
                pb::SkillRequirement {
                    module: SkillModule::Orders as i32,
                    min_level: 2,
                },
            ],
            credential_policy: CredentialPolicy::Always as i32,
            accepted_credentials: vec![ClinicalCredential::Rn as i32],
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn targets_default_until_a_tenant_sets_its_own() {
        let (_db, pool) = fresh("routing_policy_sla").await;
        let mut conn = pool.acquire().await.unwrap();
        assert_eq!(
            targets_changed(&mut conn, "stmarys").await.unwrap(),
            (Targets::default(), None)
        );
        assert_eq!(lock_targets_version(&mut conn, "stmarys").await.unwrap(), 0);
        let mine = Targets {
            response_minutes: [10, 20, 60, 120],
            resolution_minutes: [60, 120, 600, 1200],
            ack_timeout_seconds: 90,
            pause_resolution_on_hold: true,
            tenant_override: true,
            version: 0,
        };
        let (stored, at) = set_targets(&mut conn, "stmarys", &mine).await.unwrap();
        assert_eq!(
            stored,
            Targets {
                version: 1,
                ..mine.clone()
            }
        );
        assert_eq!(
            targets_changed(&mut conn, "stmarys").await.unwrap(),
            (stored, Some(at))
        );
        assert_eq!(
            targets(&mut conn, "lakeside").await.unwrap(),
            Targets::default()
        );
        let (stored, _) = set_targets(&mut conn, "stmarys", &mine).await.unwrap();
        assert_eq!(stored.version, 2);
        assert_eq!(lock_targets_version(&mut conn, "stmarys").await.unwrap(), 2);
        assert_eq!(targets(&mut conn, "stmarys").await.unwrap(), stored);
    }
}
