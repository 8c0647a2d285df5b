//! Every bounded field of intake's API, at its edge, against one real
//! intake: the maximum (`wardline_intake::limits`) is accepted, one past it
//! and a NUL byte are INVALID_ARGUMENT naming the field, and nothing
//! refused was written. The cases are the table docs/limits.md shows.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};

use common::*;
use tonic::Code;
use wardline_intake::limits;
use wardline_proto::common::{Priority, TicketStatus};
use wardline_proto::intake::*;
use wardline_testkit::Auth;
use wardline_testkit::limits::{Nul, Size, walk};

/// One request of the table.
enum Call {
    CreateTenant(CreateTenantRequest),
    AddFacility(AddFacilityRequest),
    GetTenant(GetTenantRequest),
    ListTenants(ListTenantsRequest),
    CreateTicket(CreateTicketRequest),
    GetTicket(GetTicketRequest),
    ListTickets(ListTicketsRequest),
    AddNote(AddNoteRequest),
    ListNotes(ListNotesRequest),
}

/// What the requests need: the ticket notes go to, fresh request ids.
struct Ctx {
    ticket_id: String,
    seq: AtomicU32,
}

impl Ctx {
    fn next(&self) -> u32 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }
    fn rid(&self) -> String {
        format!("edge-{}", self.next())
    }
    /// A tenant slug nobody used yet.
    fn tenant(&self) -> String {
        format!("edge-{}", self.next())
    }
    /// A ticket prefix nobody used yet (prefixes are unique): `E` and the
    /// sequence in letters.
    fn prefix(&self) -> String {
        let mut n = self.next();
        let mut out = String::from("E");
        for _ in 0..4 {
            out.push(char::from(b'A' + (n % 26) as u8));
            n /= 26;
        }
        out
    }
}

type Edge = wardline_testkit::limits::Edge<Ctx, Call>;

fn letters(n: usize) -> String {
    "a".repeat(n)
}

fn digits_number(n: usize) -> String {
    format!("STM-{}", "0".repeat(n - 4))
}

fn email(n: usize) -> String {
    let domain = "@example.org";
    format!("{}{domain}", "r".repeat(n - domain.len()))
}

fn phone(n: usize) -> String {
    format!("+{}", "1".repeat(n))
}

fn printable(n: usize) -> String {
    "k".repeat(n)
}

fn tenant_request(ctx: &Ctx) -> CreateTenantRequest {
    CreateTenantRequest {
        request_id: ctx.rid(),
        tenant_id: ctx.tenant(),
        name: "Edge hospital".into(),
        time_zone: "America/Chicago".into(),
        ticket_prefix: ctx.prefix(),
        facilities: Vec::new(),
        reopen_window_hours: 0,
    }
}

fn ticket(ctx: &Ctx) -> CreateTicketRequest {
    nurse_ticket(&ctx.rid())
}

fn caller(r: &mut CreateTicketRequest) -> &mut Caller {
    r.caller.as_mut().unwrap()
}

fn edges() -> Vec<Edge> {
    use Size::{Count, Text};
    let ok = Code::Ok;
    vec![
        Edge {
            rpc: "CreateTenant",
            field: "request_id",
            max: limits::REQUEST_ID,
            size: Text(printable),
            make: |c, v, _| {
                Call::CreateTenant(CreateTenantRequest {
                    request_id: format!("{}{}", c.next(), v)[..v.len()].to_owned(),
                    ..tenant_request(c)
                })
            },
            at_max: ok,
        },
        Edge {
            rpc: "CreateTenant",
            field: "tenant_id",
            max: limits::TENANT_ID,
            size: Text(letters),
            make: |c, v, _| {
                Call::CreateTenant(CreateTenantRequest {
                    tenant_id: v,
                    ..tenant_request(c)
                })
            },
            at_max: ok,
        },
        Edge {
            rpc: "CreateTenant",
            field: "name",
            max: limits::NAME,
            size: Text(letters),
            make: |c, v, _| {
                Call::CreateTenant(CreateTenantRequest {
                    name: v,
                    ..tenant_request(c)
                })
            },
            at_max: ok,
        },
        Edge {
            rpc: "CreateTenant",
            field: "ticket_prefix",
            max: limits::TICKET_PREFIX,
            size: Text(|n| "E".repeat(n)),
            make: |c, v, _| {
                Call::CreateTenant(CreateTenantRequest {
                    ticket_prefix: v,
                    ..tenant_request(c)
                })
            },
            at_max: ok,
        },
        Edge {
            rpc: "CreateTenant",
            field: "reopen_window_hours",
            max: limits::REOPEN_WINDOW_HOURS as usize,
            size: Count,
            make: |c, _, n| {
                Call::CreateTenant(CreateTenantRequest {
                    reopen_window_hours: n as u32,
                    ..tenant_request(c)
                })
            },
            at_max: ok,
        },
        Edge {
            rpc: "CreateTenant",
            field: "facilities",
            max: limits::FACILITIES,
            size: Count,
            make: |c, _, n| {
                Call::CreateTenant(CreateTenantRequest {
                    facilities: (0..n)
                        .map(|i| Facility {
                            facility_id: format!("f{i}"),
                            name: format!("Facility {i}"),
                        })
                        .collect(),
                    ..tenant_request(c)
                })
            },
            at_max: ok,
        },
        Edge {
            rpc: "AddFacility",
            field: "facility.facility_id",
            max: limits::FACILITY_ID,
            size: Text(letters),
            make: |c, v, _| {
                Call::AddFacility(AddFacilityRequest {
                    request_id: c.rid(),
                    facility: Some(Facility {
                        facility_id: v,
                        name: "Edge clinic".into(),
                    }),
                })
            },
            at_max: ok,
        },
        Edge {
            rpc: "AddFacility",
            field: "facility.name",
            max: limits::NAME,
            size: Text(letters),
            make: |c, v, _| {
                Call::AddFacility(AddFacilityRequest {
                    request_id: c.rid(),
                    facility: Some(Facility {
                        facility_id: format!("clinic-{}", c.next()),
                        name: v,
                    }),
                })
            },
            at_max: ok,
        },
        Edge {
            rpc: "GetTenant",
            field: "tenant_id",
            max: limits::TENANT_ID,
            size: Text(letters),
            make: |_, v, _| Call::GetTenant(GetTenantRequest { tenant_id: v }),
            // Another tenant's slug looks like a missing one.
            at_max: Code::NotFound,
        },
        Edge {
            rpc: "ListTenants",
            field: "page_size",
            max: limits::PAGE_SIZE as usize,
            size: Count,
            make: |_, _, n| {
                Call::ListTenants(ListTenantsRequest {
                    page_size: n as u32,
                    page_token: String::new(),
                })
            },
            at_max: ok,
        },
        Edge {
            rpc: "CreateTicket",
            field: "request_id",
            max: limits::REQUEST_ID,
            size: Text(printable),
            make: |c, v, _| {
                Call::CreateTicket(CreateTicketRequest {
                    request_id: format!("{}{}", c.next(), v)[..v.len()].to_owned(),
                    ..ticket(c)
                })
            },
            at_max: ok,
        },
        Edge {
            rpc: "CreateTicket",
            field: "facility_id",
            max: limits::FACILITY_ID,
            // The facility AddFacility's edge created.
            size: Text(letters),
            make: |c, v, _| {
                Call::CreateTicket(CreateTicketRequest {
                    facility_id: v,
                    ..ticket(c)
                })
            },
            at_max: ok,
        },
        Edge {
            rpc: "CreateTicket",
            field: "caller.caller_id",
            max: limits::CALLER_ID,
            size: Text(letters),
            make: |c, v, _| {
                let mut r = ticket(c);
                caller(&mut r).caller_id = v;
                Call::CreateTicket(r)
            },
            at_max: ok,
        },
        Edge {
            rpc: "CreateTicket",
            field: "caller.name",
            max: limits::NAME,
            size: Text(letters),
            make: |c, v, _| {
                let mut r = ticket(c);
                caller(&mut r).name = v;
                Call::CreateTicket(r)
            },
            at_max: ok,
        },
        Edge {
            rpc: "CreateTicket",
            field: "caller.email",
            max: limits::EMAIL,
            size: Text(email),
            make: |c, v, _| {
                let mut r = ticket(c);
                caller(&mut r).email = v;
                Call::CreateTicket(r)
            },
            at_max: ok,
        },
        Edge {
            rpc: "CreateTicket",
            field: "caller.phone",
            max: limits::PHONE_DIGITS,
            size: Text(phone),
            make: |c, v, _| {
                let mut r = ticket(c);
                caller(&mut r).phone = v;
                Call::CreateTicket(r)
            },
            at_max: ok,
        },
        Edge {
            rpc: "CreateTicket",
            field: "application",
            max: limits::APPLICATION,
            size: Text(letters),
            make: |c, v, _| {
                Call::CreateTicket(CreateTicketRequest {
                    application: v,
                    ..ticket(c)
                })
            },
            at_max: ok,
        },
        Edge {
            rpc: "CreateTicket",
            field: "description",
            max: limits::TEXT,
            size: Text(letters),
            make: |c, v, _| {
                Call::CreateTicket(CreateTicketRequest {
                    description: v,
                    ..ticket(c)
                })
            },
            at_max: ok,
        },
        Edge {
            rpc: "GetTicket",
            field: "number",
            max: limits::TICKET_NUMBER,
            size: Text(digits_number),
            make: |_, v, _| {
                Call::GetTicket(GetTicketRequest {
                    ticket_id: String::new(),
                    number: v,
                })
            },
            at_max: Code::NotFound,
        },
        Edge {
            rpc: "ListTickets",
            field: "statuses",
            max: limits::FILTER_VALUES,
            size: Count,
            make: |_, _, n| {
                Call::ListTickets(ListTicketsRequest {
                    statuses: vec![TicketStatus::New as i32; n],
                    ..Default::default()
                })
            },
            at_max: ok,
        },
        Edge {
            rpc: "ListTickets",
            field: "priorities",
            max: limits::FILTER_VALUES,
            size: Count,
            make: |_, _, n| {
                Call::ListTickets(ListTicketsRequest {
                    priorities: vec![Priority::P1 as i32; n],
                    ..Default::default()
                })
            },
            at_max: ok,
        },
        Edge {
            rpc: "ListTickets",
            field: "assignee_analyst_id",
            max: limits::ANALYST_ID,
            size: Text(letters),
            make: |_, v, _| {
                Call::ListTickets(ListTicketsRequest {
                    assignee_analyst_id: v,
                    ..Default::default()
                })
            },
            at_max: ok,
        },
        Edge {
            rpc: "ListTickets",
            field: "facility_id",
            max: limits::FACILITY_ID,
            size: Text(letters),
            make: |_, v, _| {
                Call::ListTickets(ListTicketsRequest {
                    facility_id: v,
                    ..Default::default()
                })
            },
            at_max: ok,
        },
        Edge {
            rpc: "ListTickets",
            field: "page_size",
            max: limits::PAGE_SIZE as usize,
            size: Count,
            make: |_, _, n| {
                Call::ListTickets(ListTicketsRequest {
                    page_size: n as u32,
                    ..Default::default()
                })
            },
            at_max: ok,
        },
        Edge {
            rpc: "AddNote",
            field: "body",
            max: limits::TEXT,
            size: Text(letters),
            make: |c, v, _| {
                Call::AddNote(AddNoteRequest {
                    request_id: c.rid(),
                    ticket_id: c.ticket_id.clone(),
                    body: v,
                    public: false,
                })
            },
            at_max: ok,
        },
        Edge {
            rpc: "ListNotes",
            field: "page_size",
            max: limits::PAGE_SIZE as usize,
            size: Count,
            make: |c, _, n| {
                Call::ListNotes(ListNotesRequest {
                    ticket_id: c.ticket_id.clone(),
                    page_size: n as u32,
                    page_token: String::new(),
                })
            },
            at_max: ok,
        },
    ]
}

/// Sends `call` as the tenant's admin (who takes calls for anyone) or,
/// for tenant administration, the vendor.
async fn send(
    vendor: &mut Tenants,
    admin: &mut Tenants,
    tickets: &mut Tickets,
    call: Call,
) -> Result<(), tonic::Status> {
    match call {
        Call::CreateTenant(r) => vendor.create_tenant(r).await.map(drop),
        Call::AddFacility(r) => admin.add_facility(r).await.map(drop),
        Call::GetTenant(r) => admin.get_tenant(r).await.map(drop),
        Call::ListTenants(r) => vendor.list_tenants(r).await.map(drop),
        Call::CreateTicket(r) => tickets.create_ticket(r).await.map(drop),
        Call::GetTicket(r) => tickets.get_ticket(r).await.map(drop),
        Call::ListTickets(r) => tickets.list_tickets(r).await.map(drop),
        Call::AddNote(r) => tickets.add_note(r).await.map(drop),
        Call::ListNotes(r) => tickets.list_notes(r).await.map(drop),
    }
}

#[tokio::test]
async fn every_bounded_field_takes_its_maximum_and_refuses_one_more_by_name() {
    let app = spawn_app().await;
    app.create_tenant("stmarys", "STM").await;
    let first = app.nurse_creates("stmarys", "first").await;
    let ctx = Ctx {
        ticket_id: first.ticket_id,
        seq: AtomicU32::new(0),
    };
    let vendor = app.vendor();
    let admin = app.tenants(Auth::new(&admin_token("stmarys"), None));
    let tickets = app.tickets(&admin_token("stmarys"));
    let count = |tickets: Tickets| async move {
        let mut tickets = tickets;
        let page = tickets
            .list_tickets(ListTicketsRequest {
                page_size: limits::PAGE_SIZE,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        page.tickets.len()
    };
    let refused = walk(
        &ctx,
        edges(),
        Nul::Second,
        |call| {
            let (mut vendor, mut admin, mut tickets) =
                (vendor.clone(), admin.clone(), tickets.clone());
            async move { send(&mut vendor, &mut admin, &mut tickets, call).await }
        },
        || count(tickets.clone()),
    )
    .await;
    assert!(refused > 40, "{refused} refusals checked");
}
