//! RoutingRuleService and SlaTargetService: a tenant's category rules and
//! SLA targets, always for the tenant of the caller's token.

use prost::Message;
use tonic::{Request, Response, Status};
use wardline_kit::api::{ApiError, Begun, Idempotent};
use wardline_kit::audit;
use wardline_kit::auth::{Caller, Role};
use wardline_kit::grpc::db_status;
use wardline_kit::idempotency::{self, Claim};
use wardline_proto::routing::routing_rule_service_server::RoutingRuleService;
use wardline_proto::routing::sla_target_service_server::SlaTargetService;
use wardline_proto::routing::{
    CategoryRule, GetInternalSlaTargetsRequest, GetRoutingRulesRequest, GetRoutingRulesResponse,
    GetSlaTargetsRequest, InternalSlaTargets, PriorityTargets, ResetCategoryRuleRequest,
    SetCategoryRuleRequest, SetInternalSlaTargetsRequest, SetSlaTargetsRequest, SlaTargets,
};

use super::{Api, decode_replay, require_request_id};
use crate::domain::rules::default_rule;
use crate::domain::sla::{InternalTargets, Targets};
use crate::policy;
use crate::store::internal_sla;

/// Roles that read rules.
const RULE_READERS: &[Role] = &[Role::VendorAdmin, Role::TenantAdmin, Role::Analyst];
/// Roles that read SLA targets (billing credits breaches against them).
const TARGET_READERS: &[Role] = &[
    Role::VendorAdmin,
    Role::TenantAdmin,
    Role::Analyst,
    Role::Billing,
];
/// Roles that change rules.
const WRITERS: &[Role] = &[Role::VendorAdmin, Role::TenantAdmin];

/// The tenant whose SLA targets a caller may set. The targets are
/// contractual (billing turns their breaches into credits on the vendor's
/// invoice), so only the vendor sets them: a vendor_admin on an
/// all-tenants token naming the tenant. A vendor_admin pinned to one
/// tenant is that tenant's admin and, like a tenant_admin, only reads them.
fn contract_tenant(caller: &Caller) -> Result<String, Status> {
    caller.require(&[Role::VendorAdmin, Role::TenantAdmin])?;
    if !(caller.all_tenants && caller.has_any(&[Role::VendorAdmin])) {
        return Err(Status::permission_denied(
            "SLA targets are contractual and set by the vendor: an all-tenants vendor_admin token naming the tenant",
        ));
    }
    tenant_of(caller, &[Role::VendorAdmin])
}

/// The caller's tenant after the role check, recorded on the span.
fn tenant_of(caller: &Caller, roles: &[Role]) -> Result<String, Status> {
    caller.require(roles)?;
    let tenant = caller.tenant()?.to_owned();
    tracing::Span::current().record("tenant", tenant.as_str());
    Ok(tenant)
}

/// A rule from a request, checked; errors name `rule.<field>`.
fn rule_of(r: &SetCategoryRuleRequest) -> Result<crate::domain::rules::Rule, Status> {
    let rule = r
        .rule
        .as_ref()
        .ok_or_else(|| Status::invalid_argument("rule: required"))?;
    policy::rule_from_proto(rule).map_err(|e| Status::invalid_argument(format!("rule.{e}")))
}

/// Targets from a request, checked; errors name `targets.<field>`.
fn targets_of(r: &SetSlaTargetsRequest) -> Result<Targets, Status> {
    let t = r
        .targets
        .as_ref()
        .ok_or_else(|| Status::invalid_argument("targets: required"))?;
    policy::targets_from_proto(t).map_err(|e| Status::invalid_argument(format!("targets.{e}")))
}

/// Internal targets from a request, shape-checked (the comparison with
/// the contract's needs the database); errors name `targets[i].<field>`.
fn internal_of(r: &SetInternalSlaTargetsRequest) -> Result<InternalTargets, Status> {
    let mut t = InternalTargets::default();
    for (i, e) in r.targets.iter().enumerate() {
        let p = wardline_proto::common::Priority::try_from(e.priority)
            .unwrap_or(wardline_proto::common::Priority::Unspecified);
        t.set(p, e.response_minutes, e.resolution_minutes)
            .map_err(|m| Status::invalid_argument(format!("targets[{i}].{m}")))?;
    }
    Ok(t)
}

/// Internal targets as the API shows them (P1 first, set priorities only).
fn internal_to_proto(
    tenant: &str,
    t: &InternalTargets,
    at: Option<chrono::DateTime<chrono::Utc>>,
) -> InternalSlaTargets {
    use wardline_proto::common::Priority;
    let priorities = [Priority::P1, Priority::P2, Priority::P3, Priority::P4];
    InternalSlaTargets {
        tenant_id: tenant.to_owned(),
        targets: t
            .minutes
            .iter()
            .zip(priorities)
            .filter_map(|(m, p)| {
                m.map(|(r, s)| PriorityTargets {
                    priority: p as i32,
                    response_minutes: r,
                    resolution_minutes: s,
                })
            })
            .collect(),
        version: t.version,
        updated_at: at.map(wardline_kit::events::timestamp),
    }
}

fn check_version(expected: u64, current: u64, what: &str) -> Result<(), Status> {
    if expected != 0 && expected != current {
        return Err(Status::aborted(format!(
            "expected_version: {what} is at version {current}, not {expected}"
        )));
    }
    Ok(())
}

#[tonic::async_trait]
impl RoutingRuleService for Api {
    async fn get_routing_rules(
        &self,
        req: Request<GetRoutingRulesRequest>,
    ) -> Result<Response<GetRoutingRulesResponse>, Status> {
        let caller = Caller::from_request(&req)?;
        let tenant = tenant_of(&caller, RULE_READERS)?;
        let mut conn = self.pool.acquire().await.map_err(|e| db_status(&e))?;
        let rules = policy::effective_rules_changed(&mut conn, &tenant)
            .await
            .map_err(|e| db_status(&e))?;
        Ok(Response::new(GetRoutingRulesResponse {
            rules: rules
                .iter()
                .map(|(r, changed)| policy::rule_to_proto_changed(r, *changed))
                .collect(),
        }))
    }

    async fn set_category_rule(
        &self,
        req: Request<SetCategoryRuleRequest>,
    ) -> Result<Response<CategoryRule>, Status> {
        let caller = Caller::from_request(&req)?;
        let tenant = tenant_of(&caller, WRITERS)?;
        let r = req.into_inner();
        require_request_id(&r.request_id)?;
        let rule = rule_of(&r)?;
        tracing::Span::current().record("category", rule.category as i32);
        let hash = idempotency::request_hash("SetCategoryRule", &r);
        let mut tx = self.pool.begin().await.map_err(|e| db_status(&e))?;
        if let Claim::Replay(bytes) =
            idempotency::begin(&mut tx, &tenant, &r.request_id, "SetCategoryRule", &hash).await?
        {
            return decode_replay(&bytes);
        }
        let current = policy::lock_rule_version(&mut tx, &tenant, rule.category)
            .await
            .map_err(|e| db_status(&e))?;
        check_version(r.expected_version, current, "the rule")?;
        let (stored, at) = policy::set_rule(&mut tx, &tenant, &rule)
            .await
            .map_err(|e| db_status(&e))?;
        audit::record(
            &mut tx,
            &caller,
            &tenant,
            vec![stored.category.as_str_name().to_owned()],
            &r.request_id,
        )
        .await
        .map_err(|e| db_status(&e))?;
        let resp = policy::rule_to_proto_changed(&stored, Some(at));
        idempotency::finish(&mut tx, &tenant, &r.request_id, &resp.encode_to_vec())
            .await
            .map_err(|e| db_status(&e))?;
        tx.commit().await.map_err(|e| db_status(&e))?;
        // A relaxed rule may make queued tickets assignable.
        self.wake.notify_one();
        tracing::info!(tenant = %tenant, category = stored.category.as_str_name(), version = stored.version, "category rule set");
        Ok(Response::new(resp))
    }

    async fn reset_category_rule(
        &self,
        req: Request<ResetCategoryRuleRequest>,
    ) -> Result<Response<CategoryRule>, Status> {
        let caller = Caller::from_request(&req)?;
        let tenant = tenant_of(&caller, WRITERS)?;
        let r = req.into_inner();
        require_request_id(&r.request_id)?;
        let category = policy::category_from_proto(r.category, "category")
            .map_err(Status::invalid_argument)?;
        tracing::Span::current().record("category", category as i32);
        let hash = idempotency::request_hash("ResetCategoryRule", &r);
        let mut tx = self.pool.begin().await.map_err(|e| db_status(&e))?;
        if let Claim::Replay(bytes) =
            idempotency::begin(&mut tx, &tenant, &r.request_id, "ResetCategoryRule", &hash).await?
        {
            return decode_replay(&bytes);
        }
        let dropped = policy::reset_rule(&mut tx, &tenant, category)
            .await
            .map_err(|e| db_status(&e))?;
        audit::record(
            &mut tx,
            &caller,
            &tenant,
            vec![category.as_str_name().to_owned()],
            &r.request_id,
        )
        .await
        .map_err(|e| db_status(&e))?;
        let resp = policy::rule_to_proto(&default_rule(category));
        idempotency::finish(&mut tx, &tenant, &r.request_id, &resp.encode_to_vec())
            .await
            .map_err(|e| db_status(&e))?;
        tx.commit().await.map_err(|e| db_status(&e))?;
        if dropped {
            self.wake.notify_one();
            tracing::info!(tenant = %tenant, category = category.as_str_name(), "category rule reset to the default");
        }
        Ok(Response::new(resp))
    }
}

#[tonic::async_trait]
impl SlaTargetService for Api {
    async fn get_sla_targets(
        &self,
        req: Request<GetSlaTargetsRequest>,
    ) -> Result<Response<SlaTargets>, Status> {
        let caller = Caller::from_request(&req)?;
        let tenant = tenant_of(&caller, TARGET_READERS)?;
        let mut conn = self.pool.acquire().await.map_err(|e| db_status(&e))?;
        let (targets, changed) = policy::targets_changed(&mut conn, &tenant)
            .await
            .map_err(|e| db_status(&e))?;
        Ok(Response::new(policy::targets_to_proto(
            &tenant, &targets, changed,
        )))
    }

    async fn set_sla_targets(
        &self,
        req: Request<SetSlaTargetsRequest>,
    ) -> Result<Response<SlaTargets>, Status> {
        let caller = Caller::from_request(&req)?;
        let tenant = contract_tenant(&caller)?;
        let r = req.into_inner();
        require_request_id(&r.request_id)?;
        let targets = targets_of(&r)?;
        let hash = idempotency::request_hash("SetSlaTargets", &r);
        let mut tx = self.pool.begin().await.map_err(|e| db_status(&e))?;
        if let Claim::Replay(bytes) =
            idempotency::begin(&mut tx, &tenant, &r.request_id, "SetSlaTargets", &hash).await?
        {
            return decode_replay(&bytes);
        }
        let current = policy::lock_targets_version(&mut tx, &tenant)
            .await
            .map_err(|e| db_status(&e))?;
        check_version(r.expected_version, current, "the tenant's SLA targets")?;
        let (stored, at) = policy::set_targets(&mut tx, &tenant, &targets)
            .await
            .map_err(|e| db_status(&e))?;
        // The targets are the tenant's one set: its id names them.
        audit::record(
            &mut tx,
            &caller,
            &tenant,
            vec![tenant.clone()],
            &r.request_id,
        )
        .await
        .map_err(|e| db_status(&e))?;
        let resp = policy::targets_to_proto(&tenant, &stored, Some(at));
        idempotency::finish(&mut tx, &tenant, &r.request_id, &resp.encode_to_vec())
            .await
            .map_err(|e| db_status(&e))?;
        tx.commit().await.map_err(|e| db_status(&e))?;
        tracing::info!(tenant = %tenant, version = stored.version, "SLA targets set");
        Ok(Response::new(resp))
    }

    async fn get_internal_sla_targets(
        &self,
        req: Request<GetInternalSlaTargetsRequest>,
    ) -> Result<Response<InternalSlaTargets>, Status> {
        let caller = Caller::from_request(&req)?;
        let tenant = tenant_of(&caller, RULE_READERS)?;
        let mut tx = wardline_kit::db::begin(&self.pool, wardline_kit::db::Scope::Tenant(&tenant))
            .await
            .map_err(|e| db_status(&e))?;
        let (targets, at) = internal_sla::get(&mut tx, &tenant)
            .await
            .map_err(|e| db_status(&e))?;
        tx.commit().await.map_err(|e| db_status(&e))?;
        Ok(Response::new(internal_to_proto(&tenant, &targets, at)))
    }

    async fn set_internal_sla_targets(
        &self,
        req: Request<SetInternalSlaTargetsRequest>,
    ) -> Result<Response<InternalSlaTargets>, Status> {
        let caller = Caller::from_request(&req)?;
        let tenant = tenant_of(&caller, WRITERS)?;
        let r = req.into_inner();
        let mut targets = internal_of(&r)?;
        let mut work = match Idempotent::begin(
            &self.pool,
            &tenant,
            &r.request_id,
            "SetInternalSlaTargets",
            &r,
        )
        .await?
        {
            Begun::Replay(resp) => return Ok(Response::new(resp)),
            Begun::Fresh(work) => work,
        };
        let contract = policy::targets(work.conn(), &tenant)
            .await
            .map_err(ApiError::from)?;
        targets
            .validate(&contract)
            .map_err(Status::invalid_argument)?;
        let current = internal_sla::lock_version(work.conn(), &tenant)
            .await
            .map_err(ApiError::from)?;
        check_version(
            r.expected_version,
            current,
            "the tenant's internal SLA targets",
        )?;
        let (version, at) = internal_sla::set(work.conn(), &tenant, &targets)
            .await
            .map_err(ApiError::from)?;
        targets.version = version;
        audit::record(
            work.conn(),
            &caller,
            &tenant,
            vec![tenant.clone()],
            &r.request_id,
        )
        .await
        .map_err(ApiError::from)?;
        let resp = internal_to_proto(&tenant, &targets, Some(at));
        work.commit(&resp).await?;
        tracing::info!(tenant = %tenant, version, "internal SLA targets set");
        Ok(Response::new(resp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wardline_proto::common::{Category, Priority};
    use wardline_proto::routing::{CredentialPolicy, SkillModule, SkillRequirement};

    fn caller(tenant: Option<&str>, all: bool, roles: &[Role]) -> Caller {
        Caller {
            subject: "someone".into(),
            tenant: tenant.map(str::to_owned),
            all_tenants: all,
            roles: roles.to_vec(),
            email: None,
            phone: None,
        }
    }

    #[test]
    fn the_tenant_comes_from_the_token() {
        let admin = caller(Some("stmarys"), false, &[Role::TenantAdmin]);
        assert_eq!(tenant_of(&admin, WRITERS).unwrap(), "stmarys");
        let vendor = caller(None, true, &[Role::VendorAdmin]);
        assert_eq!(
            tenant_of(&vendor, WRITERS).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        let vendor = caller(Some("lakeside"), true, &[Role::VendorAdmin]);
        assert_eq!(tenant_of(&vendor, WRITERS).unwrap(), "lakeside");
        let analyst = caller(Some("stmarys"), false, &[Role::Analyst]);
        assert_eq!(
            tenant_of(&analyst, WRITERS).unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
        assert!(tenant_of(&analyst, RULE_READERS).is_ok());
        let billing = caller(Some("stmarys"), false, &[Role::Billing]);
        assert!(tenant_of(&billing, TARGET_READERS).is_ok());
        // Contractual SLA targets: the vendor's all-tenants admin only.
        for who in [
            &admin,
            &analyst,
            &billing,
            &caller(Some("stmarys"), false, &[Role::VendorAdmin]),
        ] {
            assert_eq!(
                contract_tenant(who).unwrap_err().code(),
                tonic::Code::PermissionDenied,
                "{:?}",
                who.roles
            );
        }
        assert_eq!(contract_tenant(&vendor).unwrap(), "lakeside");
        assert_eq!(
            tenant_of(&billing, RULE_READERS).unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
    }

    #[test]
    fn rule_errors_carry_the_request_path() {
        let r = SetCategoryRuleRequest {
            request_id: "r1".into(),
            rule: None,
            expected_version: 0,
        };
        assert_eq!(rule_of(&r).unwrap_err().message(), "rule: required");
        let r = SetCategoryRuleRequest {
            rule: Some(CategoryRule {
                category: Category::Printing as i32,
                required_skills: vec![SkillRequirement {
                    module: SkillModule::Printing as i32,
                    min_level: 9,
                }],
                credential_policy: CredentialPolicy::None as i32,
                ..Default::default()
            }),
            ..r
        };
        let e = rule_of(&r).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert_eq!(e.message(), "rule.required_skills[0].min_level: 1-5");
    }

    #[test]
    fn target_errors_carry_the_request_path() {
        let r = SetSlaTargetsRequest {
            request_id: "r1".into(),
            targets: None,
            expected_version: 0,
        };
        assert_eq!(targets_of(&r).unwrap_err().message(), "targets: required");
        let mut t = policy::targets_to_proto("stmarys", &Targets::default(), None);
        t.targets[2].response_minutes = 1; // P3 faster than P2
        let r = SetSlaTargetsRequest {
            targets: Some(t.clone()),
            ..r
        };
        assert!(
            targets_of(&r)
                .unwrap_err()
                .message()
                .starts_with("targets.targets[P3].response_minutes")
        );
        t.targets[2].response_minutes = 240;
        t.targets[0].priority = Priority::P4 as i32;
        let r = SetSlaTargetsRequest {
            targets: Some(t),
            ..r
        };
        assert!(
            targets_of(&r)
                .unwrap_err()
                .message()
                .starts_with("targets.targets[3].priority")
        );
    }

    #[test]
    fn stale_versions_are_aborted() {
        assert!(check_version(0, 3, "the rule").is_ok());
        assert!(check_version(3, 3, "the rule").is_ok());
        let e = check_version(2, 3, "the rule").unwrap_err();
        assert_eq!(e.code(), tonic::Code::Aborted);
        assert!(e.message().starts_with("expected_version"));
    }
}

/// The handlers against a real PostgreSQL.
#[cfg(test)]
mod db_tests {
    use super::*;
    use crate::grpc::analysts::db_tests::{api, req, who};
    use wardline_proto::common::{Category, Priority};
    use wardline_proto::routing::{RuleSource, SkillModule, SkillRequirement};

    fn rule(level: u32) -> CategoryRule {
        CategoryRule {
            category: Category::Printing as i32,
            required_skills: vec![SkillRequirement {
                module: SkillModule::Printing as i32,
                min_level: level,
            }],
            credential_policy: wardline_proto::routing::CredentialPolicy::None as i32,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_tenant_overrides_a_rule_and_resets_it() {
        let (_db, api) = api("routing_api_rules").await;
        let admin = who("boss", Some("stmarys"), &[Role::TenantAdmin]);
        let analyst = who("rn.jones", Some("stmarys"), &[Role::Analyst]);
        let set = |rid: &str, level: u32, expected: u64| SetCategoryRuleRequest {
            request_id: rid.into(),
            rule: Some(rule(level)),
            expected_version: expected,
        };
        let e = api
            .set_category_rule(req(set("r-0", 2, 0), &analyst))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        let first = api
            .set_category_rule(req(set("r-1", 2, 0), &admin))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (first.version, first.source),
            (1, RuleSource::Tenant as i32)
        );
        assert!(first.updated_at.is_some());
        let replay = api
            .set_category_rule(req(set("r-1", 2, 0), &admin))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(replay, first);
        let e = api
            .set_category_rule(req(set("r-2", 3, 7), &admin))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Aborted);
        let second = api
            .set_category_rule(req(set("r-3", 3, 1), &admin))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(second.version, 2);
        let rules = api
            .get_routing_rules(req(GetRoutingRulesRequest {}, &analyst))
            .await
            .unwrap()
            .into_inner()
            .rules;
        assert_eq!(rules.len(), 12);
        let printing = rules
            .iter()
            .find(|r| r.category == Category::Printing as i32)
            .unwrap();
        assert_eq!(printing.required_skills[0].min_level, 3);
        let other_tenant = who("boss", Some("lakeside"), &[Role::TenantAdmin]);
        let theirs = api
            .get_routing_rules(req(GetRoutingRulesRequest {}, &other_tenant))
            .await
            .unwrap()
            .into_inner()
            .rules;
        assert!(
            theirs
                .iter()
                .all(|r| r.source == RuleSource::Default as i32)
        );
        let reset = |rid: &str| ResetCategoryRuleRequest {
            request_id: rid.into(),
            category: Category::Printing as i32,
        };
        let back = api
            .reset_category_rule(req(reset("x-1"), &admin))
            .await
            .unwrap()
            .into_inner();
        assert_eq!((back.version, back.source), (0, RuleSource::Default as i32));
        assert_eq!(back.required_skills[0].min_level, 1);
        // Resetting a default returns it unchanged.
        let again = api
            .reset_category_rule(req(reset("x-2"), &admin))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(again, back);
        let e = api
            .reset_category_rule(req(
                ResetCategoryRuleRequest {
                    request_id: "x-3".into(),
                    category: 0,
                },
                &admin,
            ))
            .await
            .unwrap_err();
        assert_eq!(e.message(), "category: required");
    }

    #[tokio::test]
    async fn the_vendor_sets_a_tenants_sla_targets() {
        let (_db, api) = api("routing_api_sla").await;
        let tenant_admin = who("boss", Some("stmarys"), &[Role::TenantAdmin]);
        let admin = Caller {
            all_tenants: true,
            ..who("vendor", Some("stmarys"), &[Role::VendorAdmin])
        };
        let billing = who("acct", Some("stmarys"), &[Role::Billing]);
        let shipped = api
            .get_sla_targets(req(GetSlaTargetsRequest {}, &billing))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (shipped.source, shipped.version),
            (RuleSource::Default as i32, 0)
        );
        assert_eq!(shipped.tenant_id, "stmarys");
        let mut mine = shipped.clone();
        mine.targets[0].response_minutes = 10;
        mine.ack_timeout_seconds = 60;
        let set = SetSlaTargetsRequest {
            request_id: "t-1".into(),
            targets: Some(mine),
            expected_version: 0,
        };
        let stored = api
            .set_sla_targets(req(set.clone(), &admin))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (stored.source, stored.version),
            (RuleSource::Tenant as i32, 1)
        );
        assert_eq!(stored.targets[0].priority, Priority::P1 as i32);
        assert_eq!(stored.targets[0].response_minutes, 10);
        let read = api
            .get_sla_targets(req(GetSlaTargetsRequest {}, &billing))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(read, stored);
        let e = api
            .set_sla_targets(req(set.clone(), &billing))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        // A tenant admin reads the contract's targets but cannot loosen or
        // tighten the clock the vendor's credits are computed on.
        let e = api
            .set_sla_targets(req(set.clone(), &tenant_admin))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert!(
            api.get_sla_targets(req(GetSlaTargetsRequest {}, &tenant_admin))
                .await
                .is_ok()
        );
        // The proto's rule: resolution strictly after response.
        let mut equal = read.clone();
        equal.targets[2].resolution_minutes = equal.targets[2].response_minutes;
        let e = api
            .set_sla_targets(req(
                SetSlaTargetsRequest {
                    request_id: "t-3".into(),
                    targets: Some(equal),
                    expected_version: 0,
                },
                &admin,
            ))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(
            e.message()
                .starts_with("targets.targets[P3].resolution_minutes"),
            "{}",
            e.message()
        );
        let stale = SetSlaTargetsRequest {
            request_id: "t-2".into(),
            expected_version: 5,
            ..set
        };
        let e = api.set_sla_targets(req(stale, &admin)).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Aborted);
    }
}
