//! `wardctl ticket ...`: file, inspect and work tickets of `--tenant`.
//!
//! Tickets are named by id or by number (`STM-000042`, or `stm-42`, which is
//! normalised). Lifecycle commands look a number up first, since the
//! mutating calls take the id.

use anyhow::{Result, bail};
use wardline_proto::common::Category;
use wardline_proto::intake::{
    AcknowledgeTicketRequest, AddNoteRequest, Caller, CloseTicketRequest, CreateTicketRequest,
    GetTicketRequest, HoldTicketRequest, ListNotesRequest, ListTicketsRequest, ReopenTicketRequest,
    ResolveTicketRequest, StartTicketRequest, Ticket, TransferTicketRequest,
};

use super::{Context, print_json};
use crate::cli::{CreateTicketArgs, ListTicketsArgs, TicketCommand, TicketRef};
use crate::grpc::Session;
use crate::render::{self, Zone};

/// How a ticket is named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TicketKey {
    /// Its id (a UUID).
    Id(String),
    /// Its number, normalised to `PREFIX-NNNNNN`.
    Number(String),
}

/// Reads `STM-000042` (any case; digits padded to six) as a number and
/// anything else as an id.
pub fn ticket_key(s: &str) -> TicketKey {
    let s = s.trim();
    if let Some((prefix, digits)) = s.split_once('-') {
        let prefix_ok =
            (2..=6).contains(&prefix.len()) && prefix.bytes().all(|b| b.is_ascii_alphabetic());
        let digits_ok =
            !digits.is_empty() && digits.len() <= 12 && digits.bytes().all(|b| b.is_ascii_digit());
        if prefix_ok && digits_ok {
            return TicketKey::Number(format!("{}-{:0>6}", prefix.to_ascii_uppercase(), digits));
        }
    }
    TicketKey::Id(s.to_owned())
}

impl TicketKey {
    fn request(&self) -> GetTicketRequest {
        match self {
            TicketKey::Id(id) => GetTicketRequest {
                ticket_id: id.clone(),
                number: String::new(),
            },
            TicketKey::Number(n) => GetTicketRequest {
                ticket_id: String::new(),
                number: n.clone(),
            },
        }
    }
}

/// Gets a ticket by id or number.
pub async fn get(session: &Session, key: &str) -> Result<Ticket> {
    Ok(session
        .tickets()
        .get_ticket(ticket_key(key).request())
        .await?
        .into_inner())
}

/// The id of the ticket named by `key` (a lookup only for numbers).
pub async fn resolve_id(session: &Session, key: &str) -> Result<String> {
    match ticket_key(key) {
        TicketKey::Id(id) => Ok(id),
        number @ TicketKey::Number(_) => Ok(session
            .tickets()
            .get_ticket(number.request())
            .await?
            .into_inner()
            .ticket_id),
    }
}

/// The request of `ticket create`.
pub fn create_request(args: &CreateTicketArgs, request_id: String) -> CreateTicketRequest {
    CreateTicketRequest {
        request_id,
        facility_id: args.facility.clone(),
        caller: Some(Caller {
            caller_id: args.caller_id.clone(),
            name: args.caller_name.clone(),
            role: args.caller_role as i32,
            email: args.caller_email.clone().unwrap_or_default(),
            phone: args.caller_phone.clone().unwrap_or_default(),
        }),
        channel: args.channel as i32,
        application: args.application.clone().unwrap_or_default(),
        category: args.category.unwrap_or(Category::Unspecified) as i32,
        urgency: args.urgency as i32,
        impact: args.impact as i32,
        patient_care_blocked: args.patient_care_blocked,
        description: args.description.clone(),
    }
}

/// The first request of `ticket list` (the page token is filled in later).
pub fn list_request(args: &ListTicketsArgs) -> ListTicketsRequest {
    ListTicketsRequest {
        statuses: args.statuses.iter().map(|s| *s as i32).collect(),
        priorities: args.priorities.iter().map(|p| *p as i32).collect(),
        assignee_analyst_id: args.assignee.clone().unwrap_or_default(),
        facility_id: args.facility.clone().unwrap_or_default(),
        created: None,
        page_size: args.limit.min(500),
        page_token: String::new(),
    }
}

/// Up to `limit` tickets matching `first`, following the pages.
pub async fn list(session: &Session, req: ListTicketsRequest, limit: usize) -> Result<Vec<Ticket>> {
    paged!(limit, session.tickets(), list_tickets, req, tickets)
}

/// The zone to show a tenant's times in: its own unless `--utc` (or JSON,
/// which is always UTC), falling back to UTC when the tenant can't be read.
pub async fn zone_of(ctx: &Context, session: &Session, tenant_id: &str) -> Zone {
    if ctx.utc || ctx.json {
        return Zone::Utc;
    }
    match super::tenant::get(session, tenant_id).await {
        Ok(t) => Zone::for_tenant(&t.time_zone, false),
        Err(e) => {
            tracing::debug!(error = %e, "tenant not readable; showing UTC");
            Zone::Utc
        }
    }
}

/// Runs a ticket command.
pub async fn run(ctx: &Context, cmd: TicketCommand) -> Result<()> {
    let tenant = ctx.tenant_for_tickets()?;
    let session = ctx.session(tenant).await?;
    match cmd {
        TicketCommand::Create(args) => {
            let req = create_request(&args, ctx.request_id());
            let ticket = session.tickets().create_ticket(req).await?.into_inner();
            show_details(ctx, &session, &ticket).await;
        }
        TicketCommand::Get { ticket } => {
            let ticket = get(&session, &ticket).await?;
            show_details(ctx, &session, &ticket).await;
        }
        TicketCommand::List(args) => {
            let tickets = list(&session, list_request(&args), args.limit as usize).await?;
            if ctx.json {
                print_json(&tickets);
            } else if tickets.is_empty() {
                println!("no tickets match");
            } else {
                let zone = zone_of(ctx, &session, &tickets[0].tenant_id).await;
                print!("{}", render::ticket_table(&tickets, zone).render());
                if tickets.iter().any(|t| t.category_classified) {
                    println!("(* category classified by intake from the description)");
                }
            }
        }
        TicketCommand::Note {
            ticket,
            body,
            public,
        } => note(ctx, &session, &ticket, body, public).await?,
        TicketCommand::Notes { ticket } => notes(ctx, &session, &ticket).await?,
        change => {
            let ticket = lifecycle(ctx, &session, change).await?;
            if ctx.json {
                print_json(&ticket);
            } else {
                println!("{}", render::ticket_line(&ticket));
            }
        }
    }
    Ok(())
}

/// A lifecycle change (ack, start, hold, resolve, close, reopen, transfer).
async fn lifecycle(ctx: &Context, session: &Session, cmd: TicketCommand) -> Result<Ticket> {
    let mut tickets = session.tickets();
    let request_id = ctx.request_id();
    let ticket = match cmd {
        TicketCommand::Ack(t) => {
            let req = AcknowledgeTicketRequest {
                request_id,
                ticket_id: resolve_id(session, &t.ticket).await?,
                expected_version: expected(&t),
            };
            tickets.acknowledge_ticket(req).await?
        }
        TicketCommand::Start(t) => {
            let req = StartTicketRequest {
                request_id,
                ticket_id: resolve_id(session, &t.ticket).await?,
                expected_version: expected(&t),
            };
            tickets.start_ticket(req).await?
        }
        TicketCommand::Hold { target, reason } => {
            let req = HoldTicketRequest {
                request_id,
                ticket_id: resolve_id(session, &target.ticket).await?,
                expected_version: expected(&target),
                reason: reason as i32,
            };
            tickets.hold_ticket(req).await?
        }
        TicketCommand::Resolve { target, code, fcr } => {
            let req = ResolveTicketRequest {
                request_id,
                ticket_id: resolve_id(session, &target.ticket).await?,
                expected_version: expected(&target),
                resolution_code: code as i32,
                first_contact_resolution: fcr,
            };
            tickets.resolve_ticket(req).await?
        }
        TicketCommand::Close(t) => {
            let req = CloseTicketRequest {
                request_id,
                ticket_id: resolve_id(session, &t.ticket).await?,
                expected_version: expected(&t),
            };
            tickets.close_ticket(req).await?
        }
        TicketCommand::Reopen(t) => {
            let req = ReopenTicketRequest {
                request_id,
                ticket_id: resolve_id(session, &t.ticket).await?,
                expected_version: expected(&t),
            };
            tickets.reopen_ticket(req).await?
        }
        TicketCommand::Transfer {
            target,
            reason,
            category,
        } => {
            let req = TransferTicketRequest {
                request_id,
                ticket_id: resolve_id(session, &target.ticket).await?,
                expected_version: expected(&target),
                reason: reason as i32,
                category: category.unwrap_or(Category::Unspecified) as i32,
            };
            tickets.transfer_ticket(req).await?
        }
        other => anyhow::bail!("not a lifecycle change: {other:?}"),
    };
    Ok(ticket.into_inner())
}

async fn note(
    ctx: &Context,
    session: &Session,
    ticket: &str,
    body: String,
    public: bool,
) -> Result<()> {
    if body.trim().is_empty() {
        bail!("--body must not be empty");
    }
    let req = AddNoteRequest {
        request_id: ctx.request_id(),
        ticket_id: resolve_id(session, ticket).await?,
        body,
        public,
    };
    let note = session.tickets().add_note(req).await?.into_inner();
    if ctx.json {
        print_json(&note);
    } else {
        let visibility = if note.public { "public" } else { "internal" };
        println!(
            "added {visibility} note {} to ticket {ticket}",
            note.note_id
        );
    }
    Ok(())
}

async fn notes(ctx: &Context, session: &Session, ticket: &str) -> Result<()> {
    let t = get(session, ticket).await?;
    let mut notes = Vec::new();
    let mut page_token = String::new();
    loop {
        let req = ListNotesRequest {
            ticket_id: t.ticket_id.clone(),
            page_size: 500,
            page_token,
        };
        let page = session.tickets().list_notes(req).await?.into_inner();
        notes.extend(page.notes);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    if ctx.json {
        print_json(&notes);
    } else if notes.is_empty() {
        println!("{} has no notes", t.number);
    } else {
        let zone = zone_of(ctx, session, &t.tenant_id).await;
        print!("{}", render::notes_table(&notes, zone).render());
    }
    Ok(())
}

fn expected(t: &TicketRef) -> u64 {
    t.expected_version.unwrap_or(0)
}

async fn show_details(ctx: &Context, session: &Session, ticket: &Ticket) {
    if ctx.json {
        print_json(ticket);
    } else {
        let zone = zone_of(ctx, session, &ticket.tenant_id).await;
        print!("{}", render::ticket_details(ticket, zone));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;
    use wardline_proto::common::{CallerRole, Priority, TicketStatus};

    #[test]
    fn numbers_and_ids_are_told_apart() {
        assert_eq!(
            ticket_key("STM-000042"),
            TicketKey::Number("STM-000042".into())
        );
        assert_eq!(
            ticket_key(" stm-42 "),
            TicketKey::Number("STM-000042".into())
        );
        assert_eq!(
            ticket_key("ABCDEF-1234567"),
            TicketKey::Number("ABCDEF-1234567".into())
        );
        let id = "0193a0e1-6c2f-7b3d-9a4e-5f6a7b8c9d0e";
        assert_eq!(ticket_key(id), TicketKey::Id(id.into()));
        assert_eq!(ticket_key("A-1"), TicketKey::Id("A-1".into()));
        assert_eq!(ticket_key("STM-"), TicketKey::Id("STM-".into()));
        assert_eq!(ticket_key("STM-4x"), TicketKey::Id("STM-4x".into()));
        assert_eq!(ticket_key("STM-000042").request().number, "STM-000042");
        assert_eq!(ticket_key(id).request().ticket_id, id);
    }

    fn parse(args: &[&str]) -> Command {
        Cli::try_parse_from(std::iter::once("wardctl").chain(args.iter().copied()))
            .unwrap()
            .command
    }

    #[test]
    fn create_maps_every_flag_onto_the_request() {
        let Command::Ticket(TicketCommand::Create(args)) = parse(&[
            "ticket",
            "create",
            "--facility",
            "north-clinic",
            "--caller-id",
            "reg.patel",
            "--caller-name",
            "Anita Patel",
            "--caller-role",
            "non-clinical",
            "--caller-email",
            "a@x.example",
            "--channel",
            "portal",
            "--application",
            "adt",
            "--urgency",
            "medium",
            "--impact",
            "multiple-users",
            "--description",
            "printer jams",
        ]) else {
            panic!("not create")
        };
        let req = create_request(&args, "r1".into());
        assert_eq!(req.request_id, "r1");
        assert_eq!(req.facility_id, "north-clinic");
        let caller = req.caller.unwrap();
        assert_eq!(caller.role, CallerRole::NonClinical as i32);
        assert_eq!(caller.email, "a@x.example");
        assert_eq!(caller.phone, "");
        assert_eq!(
            req.category,
            Category::Unspecified as i32,
            "left to intake's classifier"
        );
        assert_eq!(req.application, "adt");
        assert!(!req.patient_care_blocked);
    }

    #[test]
    fn list_maps_filters() {
        let Command::Ticket(TicketCommand::List(args)) = parse(&[
            "ticket",
            "list",
            "--status",
            "new",
            "--priority",
            "p1",
            "--facility",
            "main",
            "--limit",
            "900",
        ]) else {
            panic!("not list")
        };
        let req = list_request(&args);
        assert_eq!(req.statuses, vec![TicketStatus::New as i32]);
        assert_eq!(req.priorities, vec![Priority::P1 as i32]);
        assert_eq!(req.facility_id, "main");
        assert_eq!(req.assignee_analyst_id, "");
        assert_eq!(req.page_size, 500);
    }
}
