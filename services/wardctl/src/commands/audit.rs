//! `wardctl audit`: who read or changed what in a tenant, from a service's
//! audit trail (`wardline.common.v1.AuditService`), as a table, JSON or CSV.

use anyhow::{Context as _, Result};
use wardline_proto::common::{AuditRecord, ListAuditRecordsRequest};

use super::routing::tenant_zone;
use super::{Context, print_json, ticket};
use crate::cli::{AuditArgs, Service};
use crate::render;
use crate::table::Table;

/// Runs `wardctl audit`.
pub async fn run(ctx: &Context, args: &AuditArgs) -> Result<()> {
    let tenant = ctx.tenant_for("the tenant whose audit trail to read")?;
    let session = match args.service {
        Service::Intake => ctx.session(tenant).await?,
        Service::Routing => ctx.routing_session(tenant).await?,
        Service::Billing => ctx.billing_session(tenant).await?,
        Service::Notification => ctx.notification_session(tenant).await?,
    };
    let resource_id = match (&args.ticket, &args.resource) {
        (Some(t), _) => {
            let intake = ctx.session(tenant).await?;
            ticket::resolve_id(&intake, t).await?
        }
        (None, Some(r)) => r.clone(),
        (None, None) => String::new(),
    };
    let req = ListAuditRecordsRequest {
        resource_id,
        subject: args.subject.clone().unwrap_or_default(),
        ..Default::default()
    };
    let records: Vec<AuditRecord> = paged!(
        args.limit as usize,
        session.audit(),
        list_audit_records,
        req,
        records
    )?;
    if ctx.json {
        print_json(&records);
    } else if args.csv {
        write_csv(&records)?;
    } else if records.is_empty() {
        println!("no audit records match");
    } else {
        let zone = tenant_zone(ctx, tenant).await;
        let mut t = Table::of("AT|SUBJECT|ROLES|METHOD|RESOURCES|PEER|TRACE");
        for r in &records {
            t.row([
                render::time(r.at.as_ref(), zone),
                r.subject.clone(),
                r.roles.join(","),
                r.method.clone(),
                render::dash(&r.resource_ids.join(" ")),
                render::dash(&r.peer),
                render::dash(&r.trace_id),
            ]);
        }
        print!("{}", t.render());
    }
    Ok(())
}

/// The records as CSV, one line each, UTC times.
fn write_csv(records: &[AuditRecord]) -> Result<()> {
    let mut w = csv::Writer::from_writer(std::io::stdout());
    w.write_record([
        "at",
        "tenant_id",
        "subject",
        "roles",
        "method",
        "resource_ids",
        "peer",
        "request_id",
        "trace_id",
    ])?;
    for r in records {
        w.write_record([
            render::time(r.at.as_ref(), render::Zone::Utc).as_str(),
            &r.tenant_id,
            &r.subject,
            &r.roles.join(" "),
            &r.method,
            &r.resource_ids.join(" "),
            &r.peer,
            &r.request_id,
            &r.trace_id,
        ])?;
    }
    w.flush().context("cannot write CSV")
}
