//! `wardctl analyst ...`: routing's analyst directory.
//!
//! Analysts may cover several tenants, so these commands do not need
//! `--tenant`; given, it is sent as `x-tenant-id` and narrows `list` to the
//! analysts covering that tenant.

use anyhow::Result;
use wardline_proto::events::Availability;
use wardline_proto::routing::{
    Analyst, GetAnalystRequest, ListAnalystsRequest, SetAvailabilityRequest, Shift, Skill,
    SkillModule, TenantCoverage, UpsertAnalystRequest,
};

use super::{Context, print_json};
use crate::cli::{AnalystCommand, ListAnalystsArgs, UpsertAnalystArgs};
use crate::grpc::Session;
use crate::render::routing as render;

/// The request of `analyst upsert`.
pub fn upsert_request(a: &UpsertAnalystArgs, request_id: String) -> UpsertAnalystRequest {
    UpsertAnalystRequest {
        request_id,
        analyst: Some(Analyst {
            analyst_id: a.id.clone(),
            name: a.name.clone(),
            email: a.email.clone(),
            phone: a.phone.clone().unwrap_or_default(),
            pager: a.pager.clone().unwrap_or_default(),
            time_zone: a.time_zone.clone(),
            coverage: a
                .coverage
                .iter()
                .map(|c| TenantCoverage {
                    tenant_id: c.tenant.clone(),
                    facility_ids: c.facilities.clone(),
                })
                .collect(),
            skills: a
                .skills
                .iter()
                .map(|s| Skill {
                    module: s.module as i32,
                    level: s.level,
                })
                .collect(),
            credentials: a.credentials.iter().map(|c| *c as i32).collect(),
            languages: a.languages.clone(),
            max_concurrent_tickets: a.max_tickets,
            shifts: a
                .shifts
                .iter()
                .map(|s| Shift {
                    day_of_week: s.day as i32,
                    start: s.start.clone(),
                    end: s.end.clone(),
                })
                .collect(),
            availability: a.availability.unwrap_or(Availability::Unspecified) as i32,
            supervisor: a.supervisor,
            tier2: a.tier2,
            on_call: a.on_call,
            ..Default::default()
        }),
        expected_version: a.expected_version.unwrap_or(0),
    }
}

/// The first request of `analyst list` (the page token is filled in later).
pub fn list_request(a: &ListAnalystsArgs) -> ListAnalystsRequest {
    ListAnalystsRequest {
        // The tenant travels as x-tenant-id, which works for vendor and
        // tenant-scoped tokens alike.
        tenant_id: String::new(),
        availabilities: a.availabilities.iter().map(|v| *v as i32).collect(),
        skill_module: a.skill.map_or(SkillModule::Unspecified, |s| s.module) as i32,
        min_skill_level: a.skill.map_or(0, |s| s.level),
        credential: a.credential.map_or(0, |c| c as i32),
        on_shift_only: a.on_shift,
        supervisors_only: a.supervisors,
        page_size: 0,
        page_token: String::new(),
    }
}

/// A request id derived from `base` for a follow-up call of the same
/// invocation (a retry with the same `--request-id` repeats both calls).
pub fn derived_request_id(base: &str, suffix: &str) -> String {
    let keep = 128usize.saturating_sub(suffix.len() + 1).min(base.len());
    format!("{}-{suffix}", &base[..keep])
}

/// Up to `limit` analysts matching `req`, following the pages.
pub async fn list(
    session: &Session,
    req: ListAnalystsRequest,
    limit: usize,
) -> Result<Vec<Analyst>> {
    paged!(limit, session.analysts(), list_analysts, req, analysts)
}

/// Runs an analyst command.
pub async fn run(ctx: &Context, cmd: AnalystCommand) -> Result<()> {
    let session = ctx.routing_session(ctx.tenant.as_deref()).await?;
    match cmd {
        AnalystCommand::Upsert(args) => {
            let request_id = ctx.request_id();
            let req = upsert_request(&args, request_id.clone());
            let mut analyst = session.analysts().upsert_analyst(req).await?.into_inner();
            // On update routing keeps the availability (it is a state, not
            // directory data): apply the one asked for with its own call.
            if let Some(wanted) = args.availability
                && analyst.availability != wanted as i32
            {
                let req = SetAvailabilityRequest {
                    request_id: derived_request_id(&request_id, "availability"),
                    analyst_id: analyst.analyst_id.clone(),
                    availability: wanted as i32,
                    expected_version: 0,
                };
                analyst = session.analysts().set_availability(req).await?.into_inner();
            }
            show(ctx, &analyst);
        }
        AnalystCommand::Get { id } => {
            let analyst = session
                .analysts()
                .get_analyst(GetAnalystRequest { analyst_id: id })
                .await?
                .into_inner();
            show(ctx, &analyst);
        }
        AnalystCommand::List(args) => {
            let analysts = list(&session, list_request(&args), args.limit as usize).await?;
            if ctx.json {
                print_json(&analysts);
            } else if analysts.is_empty() {
                match &ctx.tenant {
                    Some(t) => println!("no analysts covering {t} match"),
                    None => println!("no analysts match"),
                }
            } else {
                print!("{}", render::analyst_table(&analysts).render());
            }
        }
        AnalystCommand::Availability {
            id,
            availability,
            expected_version,
        } => {
            let req = SetAvailabilityRequest {
                request_id: ctx.request_id(),
                analyst_id: id,
                availability: availability as i32,
                expected_version: expected_version.unwrap_or(0),
            };
            let analyst = session.analysts().set_availability(req).await?.into_inner();
            if ctx.json {
                print_json(&analyst);
            } else {
                println!(
                    "{}  {}  load {}/{}  version {}",
                    analyst.analyst_id,
                    crate::render::label::<Availability>(analyst.availability),
                    analyst.current_load,
                    analyst.max_concurrent_tickets,
                    analyst.version
                );
            }
        }
    }
    Ok(())
}

fn show(ctx: &Context, analyst: &Analyst) {
    if ctx.json {
        print_json(analyst);
    } else {
        print!("{}", render::analyst_details(analyst, ctx.utc));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;
    use wardline_proto::routing::{ClinicalCredential, DayOfWeek};

    fn parse(args: &[&str]) -> Command {
        Cli::try_parse_from(std::iter::once("wardctl").chain(args.iter().copied()))
            .unwrap()
            .command
    }

    #[test]
    fn upsert_maps_every_flag_onto_the_request() {
        let Command::Analyst(AnalystCommand::Upsert(args)) = parse(&[
            "analyst",
            "upsert",
            "--id",
            "tech.lindqvist",
            "--name",
            "Erik Lindqvist",
            "--email",
            "erik@wardline.example",
            "--pager",
            "pg-4471",
            "--time-zone",
            "America/Chicago",
            "--cover",
            "stmarys",
            "--cover",
            "lakeside:lakeside-hospital",
            "--skill",
            "printing=4",
            "--credential",
            "other-licensed",
            "--max-tickets",
            "4",
            "--shift",
            "sun:22:00-06:00",
            "--tier2",
            "--supervisor",
            "--expected-version",
            "7",
        ]) else {
            panic!("not upsert")
        };
        let req = upsert_request(&args, "r-1".into());
        assert_eq!(req.request_id, "r-1");
        assert_eq!(req.expected_version, 7);
        let a = req.analyst.unwrap();
        assert_eq!(a.analyst_id, "tech.lindqvist");
        assert_eq!(a.phone, "");
        assert_eq!(a.pager, "pg-4471");
        assert_eq!(a.coverage[1].tenant_id, "lakeside");
        assert_eq!(a.coverage[1].facility_ids, vec!["lakeside-hospital"]);
        assert_eq!(a.skills[0].module, SkillModule::Printing as i32);
        assert_eq!(a.skills[0].level, 4);
        assert_eq!(
            a.credentials,
            vec![ClinicalCredential::OtherLicensed as i32]
        );
        assert_eq!(a.max_concurrent_tickets, 4);
        assert_eq!(a.shifts[0].day_of_week, DayOfWeek::Sunday as i32);
        assert_eq!(
            (a.shifts[0].start.as_str(), a.shifts[0].end.as_str()),
            ("22:00", "06:00")
        );
        assert_eq!(
            a.availability,
            Availability::Unspecified as i32,
            "not given: routing's default (offline on create)"
        );
        assert!(a.tier2 && a.supervisor && !a.on_call);
    }

    #[test]
    fn list_maps_filters() {
        let Command::Analyst(AnalystCommand::List(args)) = parse(&[
            "analyst",
            "list",
            "--availability",
            "available",
            "--skill",
            "network",
            "--credential",
            "rn",
            "--supervisors",
        ]) else {
            panic!("not list")
        };
        let req = list_request(&args);
        assert_eq!(req.availabilities, vec![Availability::Available as i32]);
        assert_eq!(req.skill_module, SkillModule::Network as i32);
        assert_eq!(req.min_skill_level, 0);
        assert_eq!(req.credential, ClinicalCredential::Rn as i32);
        assert!(req.supervisors_only && !req.on_shift_only);
        assert_eq!(req.tenant_id, "");
    }

    #[test]
    fn derived_request_ids_stay_within_bounds() {
        assert_eq!(
            derived_request_id("r-1", "availability"),
            "r-1-availability"
        );
        let long = "x".repeat(128);
        let d = derived_request_id(&long, "availability");
        assert_eq!(d.len(), 128);
        assert!(d.ends_with("-availability"));
    }
}
