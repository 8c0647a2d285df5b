//! `wardctl queue | assignments | explain | rules | sla`: routing's view of
//! `--tenant`: what waits, who got what and why, and the rules and targets
//! that decide it. Tickets may be named by number; intake turns a number
//! into the id routing knows.

use anyhow::{Context as _, Result, bail};
use tonic::Code;
use wardline_proto::ProtoEnum as _;
use wardline_proto::common::Priority;
use wardline_proto::routing::{
    Assignment, ExplainAssignmentRequest, GetInternalSlaTargetsRequest, GetQueueRequest,
    GetQueueResponse, GetRoutingRulesRequest, GetSlaTargetsRequest, ListAssignmentsRequest,
    PriorityTargets, SetInternalSlaTargetsRequest, SetSlaTargetsRequest, SlaTargets,
};

use super::ticket::{TicketKey, ticket_key};
use super::{Context, print_json};
use crate::cli::{AssignmentsArgs, QueueArgs, SetInternalArgs, SetSlaArgs, SlaCommand};
use crate::grpc::Session;
use crate::render::Zone;
use crate::render::routing as render;

/// The zone to show `tenant`'s times in: its own (asked of intake) unless
/// `--utc` or `--json`; UTC when intake can't tell.
pub async fn tenant_zone(ctx: &Context, tenant: Option<&str>) -> Zone {
    let Some(tenant) = tenant else {
        return Zone::Utc;
    };
    if ctx.utc || ctx.json {
        return Zone::Utc;
    }
    match ctx.session(Some(tenant)).await {
        Ok(intake) => super::ticket::zone_of(ctx, &intake, tenant).await,
        Err(e) => {
            tracing::debug!(error = %e, "intake not reachable; showing UTC");
            Zone::Utc
        }
    }
}

/// The ticket id routing knows for `key` (a number is looked up in intake).
pub async fn ticket_id(ctx: &Context, tenant: Option<&str>, key: &str) -> Result<String> {
    match ticket_key(key) {
        TicketKey::Id(id) => Ok(id),
        TicketKey::Number(n) => {
            let intake = ctx.session(tenant).await.with_context(|| {
                format!(
                    "looking up ticket {n} needs intake at {} (or give the ticket id)",
                    ctx.intake_url
                )
            })?;
            super::ticket::resolve_id(&intake, &n)
                .await
                .with_context(|| format!("looking up ticket {n}"))
        }
    }
}

/// `wardctl queue`.
pub async fn queue(ctx: &Context, args: &QueueArgs) -> Result<()> {
    let tenant = ctx.tenant_for("the tenant whose queue to show")?;
    let session = ctx.routing_session(tenant).await?;
    let limit = args.limit as usize;
    let mut req = GetQueueRequest {
        priorities: args.priorities.iter().map(|p| *p as i32).collect(),
        page_size: 0,
        page_token: String::new(),
    };
    let mut first = None;
    let mut tickets = Vec::new();
    loop {
        let remaining = limit.saturating_sub(tickets.len());
        if remaining == 0 {
            break;
        }
        req.page_size = remaining.min(500) as u32;
        let page = session.queues().get_queue(req.clone()).await?.into_inner();
        let got = page.tickets.len();
        tickets.extend(page.tickets.iter().take(remaining).cloned());
        let next = page.next_page_token.clone();
        first.get_or_insert(page);
        if next.is_empty() || next == req.page_token || got == 0 {
            break;
        }
        req.page_token = next;
    }
    let head = first.unwrap_or_default();
    if ctx.json {
        print_json(&GetQueueResponse {
            tickets,
            next_page_token: String::new(),
            ..head
        });
        return Ok(());
    }
    println!("{}", render::queue_summary(&head));
    if !tickets.is_empty() {
        let zone = tenant_zone(ctx, Some(head.tenant_id.as_str()).filter(|t| !t.is_empty())).await;
        println!();
        print!("{}", render::queue_table(&tickets, zone).render());
    }
    Ok(())
}

/// The first request of `assignments` (the ticket id resolved already).
pub fn assignments_request(args: &AssignmentsArgs, ticket_id: String) -> ListAssignmentsRequest {
    ListAssignmentsRequest {
        analyst_id: args.analyst.clone().unwrap_or_default(),
        ticket_id,
        states: args.states.iter().map(|s| *s as i32).collect(),
        assigned: None,
        page_size: 0,
        page_token: String::new(),
    }
}

/// Up to `limit` assignments matching `req`, newest first, following the pages.
pub async fn list_assignments(
    session: &Session,
    req: ListAssignmentsRequest,
    limit: usize,
) -> Result<Vec<Assignment>> {
    paged!(limit, session.queues(), list_assignments, req, assignments)
}

/// `wardctl assignments`.
pub async fn assignments(ctx: &Context, args: &AssignmentsArgs) -> Result<()> {
    let tenant = ctx.tenant_for("the tenant whose assignments to show")?;
    let ticket = match &args.ticket {
        Some(key) => ticket_id(ctx, tenant, key).await?,
        None => String::new(),
    };
    let session = ctx.routing_session(tenant).await?;
    let list = list_assignments(
        &session,
        assignments_request(args, ticket),
        args.limit as usize,
    )
    .await?;
    if ctx.json {
        print_json(&list);
    } else if list.is_empty() {
        println!("no assignments match");
    } else {
        let zone = tenant_zone(ctx, tenant).await;
        print!("{}", render::assignment_table(&list, zone).render());
    }
    Ok(())
}

/// The latest assignment of a ticket, if any.
async fn latest_assignment(session: &Session, ticket_id: &str) -> Result<Option<Assignment>> {
    let req = ListAssignmentsRequest {
        ticket_id: ticket_id.to_owned(),
        page_size: 1,
        ..Default::default()
    };
    Ok(session
        .queues()
        .list_assignments(req)
        .await?
        .into_inner()
        .assignments
        .into_iter()
        .next())
}

/// `wardctl explain`: an assignment id, or a ticket (its latest assignment).
pub async fn explain(ctx: &Context, key: &str) -> Result<()> {
    let tenant = ctx.tenant_for("the tenant of the assignment")?;
    let session = ctx.routing_session(tenant).await?;
    let assignment_id = match ticket_key(key) {
        TicketKey::Number(n) => {
            let id = ticket_id(ctx, tenant, &n).await?;
            match latest_assignment(&session, &id).await? {
                Some(a) => a.assignment_id,
                None => bail!("{n} has no assignment yet (is it queued? see wardctl queue)"),
            }
        }
        TicketKey::Id(id) => id,
    };
    let req = ExplainAssignmentRequest {
        assignment_id: assignment_id.clone(),
    };
    let explanation =
        match session.queues().explain_assignment(req).await {
            Ok(r) => r.into_inner(),
            // Not an assignment: perhaps a ticket id.
            Err(s) if s.code() == Code::NotFound => {
                match latest_assignment(&session, &assignment_id).await {
                    Ok(Some(a)) => session
                        .queues()
                        .explain_assignment(ExplainAssignmentRequest {
                            assignment_id: a.assignment_id,
                        })
                        .await?
                        .into_inner(),
                    _ => return Err(anyhow::Error::new(s).context(format!(
                        "no assignment (nor ticket with assignments) {assignment_id} in this tenant"
                    ))),
                }
            }
            Err(s) => return Err(s.into()),
        };
    if ctx.json {
        print_json(&explanation);
    } else {
        let zone = tenant_zone(ctx, tenant).await;
        print!("{}", render::explanation_text(&explanation, zone));
    }
    Ok(())
}

/// `wardctl rules`.
pub async fn rules(ctx: &Context) -> Result<()> {
    let tenant = ctx.tenant_for("the tenant whose rules to show")?;
    let session = ctx.routing_session(tenant).await?;
    let rules = session
        .rules()
        .get_routing_rules(GetRoutingRulesRequest {})
        .await?
        .into_inner()
        .rules;
    if ctx.json {
        print_json(&rules);
    } else {
        let zone = tenant_zone(ctx, tenant).await;
        print!("{}", render::rules_table(&rules, zone).render());
    }
    Ok(())
}

/// The targets `sla set` sends: the current ones with what was given replaced.
pub fn merge_targets(current: &SlaTargets, args: &SetSlaArgs) -> Result<SlaTargets> {
    let given = args.given();
    let mut targets = Vec::new();
    for p in Priority::values() {
        let (response_minutes, resolution_minutes) = match given.iter().find(|(q, _)| *q == p) {
            Some((_, t)) => (t.response_minutes, t.resolution_minutes),
            None => match current.targets.iter().find(|t| t.priority == p as i32) {
                Some(t) => (t.response_minutes, t.resolution_minutes),
                None => bail!(
                    "routing returned no current {} target: give --{}",
                    p.short_name(),
                    p.label()
                ),
            },
        };
        targets.push(PriorityTargets {
            priority: p as i32,
            response_minutes,
            resolution_minutes,
        });
    }
    Ok(SlaTargets {
        targets,
        ack_timeout_seconds: args.ack_timeout.unwrap_or(current.ack_timeout_seconds),
        pause_resolution_on_hold: args
            .pause_on_hold
            .unwrap_or(current.pause_resolution_on_hold),
        ..Default::default()
    })
}

/// `wardctl sla internal|set-internal`.
async fn internal_sla(
    ctx: &Context,
    tenant: Option<&str>,
    args: Option<SetInternalArgs>,
) -> Result<()> {
    let session = ctx.routing_session(tenant).await?;
    let shown = match args {
        None => session
            .sla()
            .get_internal_sla_targets(GetInternalSlaTargetsRequest {})
            .await?
            .into_inner(),
        Some(args) => {
            if args.given().is_empty() && !args.clear {
                bail!("nothing to set: give --p1..--p4 RESPONSE/RESOLUTION, or --clear");
            }
            let req = SetInternalSlaTargetsRequest {
                request_id: ctx.request_id(),
                targets: args
                    .given()
                    .into_iter()
                    .map(|(p, t)| PriorityTargets {
                        priority: p as i32,
                        response_minutes: t.response_minutes,
                        resolution_minutes: t.resolution_minutes,
                    })
                    .collect(),
                expected_version: args.expected_version.unwrap_or(0),
            };
            session
                .sla()
                .set_internal_sla_targets(req)
                .await?
                .into_inner()
        }
    };
    if ctx.json {
        print_json(&shown);
    } else {
        let zone = tenant_zone(ctx, tenant).await;
        print!("{}", render::internal_sla_text(&shown, zone));
    }
    Ok(())
}

/// `wardctl sla get|set|internal|set-internal`.
pub async fn sla(ctx: &Context, cmd: SlaCommand) -> Result<()> {
    let tenant = ctx.tenant_for("the tenant whose SLA targets to use")?;
    let cmd = match cmd {
        SlaCommand::Internal => return internal_sla(ctx, tenant, None).await,
        SlaCommand::SetInternal(args) => return internal_sla(ctx, tenant, Some(args)).await,
        other => other,
    };
    let session = ctx.routing_session(tenant).await?;
    let current = session
        .sla()
        .get_sla_targets(GetSlaTargetsRequest {})
        .await?
        .into_inner();
    let shown = match cmd {
        SlaCommand::Get | SlaCommand::Internal | SlaCommand::SetInternal(_) => current,
        SlaCommand::Set(args) => {
            if args.given().is_empty() && args.ack_timeout.is_none() && args.pause_on_hold.is_none()
            {
                bail!(
                    "nothing to change: give --p1..--p4 RESPONSE/RESOLUTION, --ack-timeout or --pause-on-hold"
                );
            }
            let req = SetSlaTargetsRequest {
                request_id: ctx.request_id(),
                targets: Some(merge_targets(&current, &args)?),
                expected_version: args.expected_version.unwrap_or(0),
            };
            session.sla().set_sla_targets(req).await?.into_inner()
        }
    };
    if ctx.json {
        print_json(&shown);
    } else {
        let zone = tenant_zone(ctx, tenant).await;
        print!("{}", render::sla_text(&shown, zone));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;
    use wardline_proto::common::Priority;
    use wardline_proto::routing::AssignmentState;

    fn parse(args: &[&str]) -> Command {
        Cli::try_parse_from(std::iter::once("wardctl").chain(args.iter().copied()))
            .unwrap()
            .command
    }

    fn defaults() -> SlaTargets {
        let t = |p: Priority, r, s| PriorityTargets {
            priority: p as i32,
            response_minutes: r,
            resolution_minutes: s,
        };
        SlaTargets {
            tenant_id: "stmarys".into(),
            targets: vec![
                t(Priority::P1, 15, 240),
                t(Priority::P2, 30, 480),
                t(Priority::P3, 240, 1440),
                t(Priority::P4, 480, 4320),
            ],
            ack_timeout_seconds: 120,
            ..Default::default()
        }
    }

    #[test]
    fn sla_set_keeps_what_is_not_given() {
        let Command::Sla(SlaCommand::Set(args)) =
            parse(&["sla", "set", "--p2", "20m/6h", "--pause-on-hold", "true"])
        else {
            panic!("not sla set")
        };
        let merged = merge_targets(&defaults(), &args).unwrap();
        let got: Vec<(i32, u32, u32)> = merged
            .targets
            .iter()
            .map(|t| (t.priority, t.response_minutes, t.resolution_minutes))
            .collect();
        assert_eq!(
            got,
            vec![(1, 15, 240), (2, 20, 360), (3, 240, 1440), (4, 480, 4320)]
        );
        assert_eq!(merged.ack_timeout_seconds, 120);
        assert!(merged.pause_resolution_on_hold);

        let mut partial = defaults();
        partial.targets.truncate(2);
        let e = merge_targets(&partial, &args).unwrap_err().to_string();
        assert!(e.contains("--p3"), "{e}");
    }

    #[test]
    fn assignment_filters_map_onto_the_request() {
        let Command::Assignments(args) = parse(&[
            "assignments",
            "--analyst",
            "rn.okonkwo",
            "--state",
            "acknowledged",
        ]) else {
            panic!("not assignments")
        };
        let req = assignments_request(&args, "t-1".into());
        assert_eq!(req.analyst_id, "rn.okonkwo");
        assert_eq!(req.ticket_id, "t-1");
        assert_eq!(req.states, vec![AssignmentState::Acknowledged as i32]);
    }
}
