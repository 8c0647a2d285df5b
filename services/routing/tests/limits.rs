//! Every bounded field of routing's API, at its edge, against one API over
//! a real database: the maximum (`wardline_routing::limits`) is accepted,
//! one past it and a NUL byte are INVALID_ARGUMENT naming the field, and
//! nothing refused was written. The cases are the table docs/limits.md
//! shows.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};

use common::{TENANT, analyst, req, routing};
use tonic::{Code, Request, Status};
use wardline_kit::auth::{Caller, Role};
use wardline_proto::common::Priority;
use wardline_proto::events::Availability;
use wardline_proto::routing as pb;
use wardline_proto::routing::analyst_service_server::AnalystService;
use wardline_proto::routing::queue_service_server::QueueService;
use wardline_routing::grpc::Api;
use wardline_routing::limits;
use wardline_testkit::limits::{Nul, Size, walk};

type Edge = wardline_testkit::limits::Edge<(), Call>;

enum Call {
    /// Sent by the vendor (coverage beyond one tenant needs the vendor).
    Upsert(Box<pb::UpsertAnalystRequest>),
    Get(pb::GetAnalystRequest),
    List(pb::ListAnalystsRequest),
    SetShifts(pb::SetShiftsRequest),
    Queue(pb::GetQueueRequest),
    Assignments(pb::ListAssignmentsRequest),
}

/// The vendor's all-tenants admin.
fn vendor<T>(msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.extensions_mut().insert(Caller {
        subject: "ops".into(),
        tenant: None,
        all_tenants: true,
        roles: vec![Role::VendorAdmin],
        email: None,
        phone: None,
    });
    r
}

async fn send(api: &Api, call: Call) -> Result<(), Status> {
    match call {
        Call::Upsert(r) => api.upsert_analyst(vendor(*r)).await.map(drop),
        Call::Get(r) => api.get_analyst(req(r)).await.map(drop),
        Call::List(r) => api.list_analysts(req(r)).await.map(drop),
        Call::SetShifts(r) => api.set_shifts(req(r)).await.map(drop),
        Call::Queue(r) => api.get_queue(req(r)).await.map(drop),
        Call::Assignments(r) => api.list_assignments(req(r)).await.map(drop),
    }
}

static SEQ: AtomicU32 = AtomicU32::new(0);

fn next() -> u32 {
    SEQ.fetch_add(1, Ordering::Relaxed)
}

/// A valid analyst nobody used yet, covering the tenant.
fn someone() -> pb::Analyst {
    pb::Analyst {
        analyst_id: format!("edge.{}", next()),
        name: "Edge Analyst".into(),
        time_zone: "UTC".into(),
        coverage: vec![pb::TenantCoverage {
            tenant_id: TENANT.into(),
            facility_ids: vec![],
        }],
        max_concurrent_tickets: 3,
        availability: Availability::Available as i32,
        ..Default::default()
    }
}

fn upsert(a: pb::Analyst) -> Call {
    Call::Upsert(Box::new(pb::UpsertAnalystRequest {
        request_id: format!("edge-{}", next()),
        analyst: Some(a),
        expected_version: 0,
    }))
}

fn shift(i: usize) -> pb::Shift {
    pb::Shift {
        day_of_week: (i % 7 + 1) as i32,
        start: format!("{:02}:00", i % 23),
        end: format!("{:02}:30", i % 23),
    }
}

/// A distinct BCP-47 tag per `i` (`aa`, `ab`, ...).
fn language(i: usize) -> String {
    let a = char::from(b'a' + (i / 26) as u8);
    let b = char::from(b'a' + (i % 26) as u8);
    format!("{a}{b}")
}

fn letters(n: usize) -> String {
    "a".repeat(n)
}

fn edges() -> Vec<Edge> {
    use Size::{Count, Text};
    let ok = Code::Ok;
    vec![
        Edge {
            rpc: "UpsertAnalyst",
            field: "request_id",
            max: limits::REQUEST_ID,
            size: Text(|n| "k".repeat(n)),
            make: |_, v, _| {
                let n = v.len();
                Call::Upsert(Box::new(pb::UpsertAnalystRequest {
                    request_id: format!("{}{v}", next())[..n].to_owned(),
                    analyst: Some(someone()),
                    expected_version: 0,
                }))
            },
            at_max: ok,
        },
        Edge {
            rpc: "UpsertAnalyst",
            field: "analyst.analyst_id",
            max: limits::ANALYST_ID,
            size: Text(letters),
            make: |_, v, _| {
                upsert(pb::Analyst {
                    analyst_id: v,
                    ..someone()
                })
            },
            at_max: ok,
        },
        Edge {
            rpc: "UpsertAnalyst",
            field: "analyst.name",
            max: limits::NAME,
            size: Text(letters),
            make: |_, v, _| {
                upsert(pb::Analyst {
                    name: v,
                    ..someone()
                })
            },
            at_max: ok,
        },
        Edge {
            rpc: "UpsertAnalyst",
            field: "analyst.email",
            max: limits::EMAIL,
            size: Text(|n| format!("{}@example.org", "r".repeat(n - 12))),
            make: |_, v, _| {
                upsert(pb::Analyst {
                    email: v,
                    ..someone()
                })
            },
            at_max: ok,
        },
        Edge {
            rpc: "UpsertAnalyst",
            field: "analyst.phone",
            max: limits::PHONE_DIGITS,
            size: Text(|n| format!("+{}", "1".repeat(n))),
            make: |_, v, _| {
                upsert(pb::Analyst {
                    phone: v,
                    ..someone()
                })
            },
            at_max: ok,
        },
        Edge {
            rpc: "UpsertAnalyst",
            field: "analyst.pager",
            max: limits::PAGER,
            size: Text(letters),
            make: |_, v, _| {
                upsert(pb::Analyst {
                    pager: v,
                    ..someone()
                })
            },
            at_max: ok,
        },
        Edge {
            rpc: "UpsertAnalyst",
            field: "analyst.coverage",
            max: limits::COVERAGE,
            size: Count,
            make: |_, _, n| {
                upsert(pb::Analyst {
                    coverage: (0..n)
                        .map(|i| pb::TenantCoverage {
                            tenant_id: format!("t{i}"),
                            facility_ids: vec![],
                        })
                        .collect(),
                    ..someone()
                })
            },
            at_max: ok,
        },
        Edge {
            rpc: "UpsertAnalyst",
            field: "analyst.coverage[0].facility_ids",
            max: limits::FACILITIES,
            size: Count,
            make: |_, _, n| {
                upsert(pb::Analyst {
                    coverage: vec![pb::TenantCoverage {
                        tenant_id: TENANT.into(),
                        facility_ids: (0..n).map(|i| format!("f{i}")).collect(),
                    }],
                    ..someone()
                })
            },
            at_max: ok,
        },
        Edge {
            rpc: "UpsertAnalyst",
            field: "analyst.coverage[0].tenant_id",
            max: limits::TENANT_ID,
            size: Text(letters),
            make: |_, v, _| {
                upsert(pb::Analyst {
                    coverage: vec![pb::TenantCoverage {
                        tenant_id: v,
                        facility_ids: vec![],
                    }],
                    ..someone()
                })
            },
            at_max: ok,
        },
        Edge {
            rpc: "UpsertAnalyst",
            field: "analyst.coverage[0].facility_ids[0]",
            max: limits::FACILITY_ID,
            size: Text(letters),
            make: |_, v, _| {
                upsert(pb::Analyst {
                    coverage: vec![pb::TenantCoverage {
                        tenant_id: TENANT.into(),
                        facility_ids: vec![v],
                    }],
                    ..someone()
                })
            },
            at_max: ok,
        },
        Edge {
            rpc: "UpsertAnalyst",
            field: "analyst.languages",
            max: limits::LANGUAGES,
            size: Count,
            make: |_, _, n| {
                upsert(pb::Analyst {
                    languages: (0..n).map(language).collect(),
                    ..someone()
                })
            },
            at_max: ok,
        },
        Edge {
            rpc: "UpsertAnalyst",
            field: "analyst.shifts",
            max: limits::SHIFTS,
            size: Count,
            make: |_, _, n| {
                upsert(pb::Analyst {
                    shifts: (0..n).map(shift).collect(),
                    ..someone()
                })
            },
            at_max: ok,
        },
        Edge {
            rpc: "UpsertAnalyst",
            field: "analyst.max_concurrent_tickets",
            max: limits::MAX_CONCURRENT_TICKETS as usize,
            size: Count,
            make: |_, _, n| {
                upsert(pb::Analyst {
                    max_concurrent_tickets: n as u32,
                    ..someone()
                })
            },
            at_max: ok,
        },
        Edge {
            rpc: "GetAnalyst",
            field: "analyst_id",
            max: limits::ANALYST_ID,
            size: Text(|n| "b".repeat(n)),
            make: |_, v, _| Call::Get(pb::GetAnalystRequest { analyst_id: v }),
            at_max: Code::NotFound,
        },
        Edge {
            rpc: "ListAnalysts",
            field: "page_size",
            max: limits::PAGE_SIZE as usize,
            size: Count,
            make: |_, _, n| {
                Call::List(pb::ListAnalystsRequest {
                    page_size: n as u32,
                    ..Default::default()
                })
            },
            at_max: ok,
        },
        Edge {
            rpc: "SetShifts",
            field: "shifts",
            max: limits::SHIFTS,
            size: Count,
            make: |_, _, n| {
                Call::SetShifts(pb::SetShiftsRequest {
                    request_id: format!("edge-{}", next()),
                    analyst_id: "an.edge".into(),
                    shifts: (0..n).map(shift).collect(),
                    expected_version: 0,
                })
            },
            at_max: ok,
        },
        Edge {
            rpc: "GetQueue",
            field: "priorities",
            max: limits::FILTER_VALUES,
            size: Count,
            make: |_, _, n| {
                Call::Queue(pb::GetQueueRequest {
                    priorities: vec![Priority::P1 as i32; n],
                    ..Default::default()
                })
            },
            at_max: ok,
        },
        Edge {
            rpc: "GetQueue",
            field: "page_size",
            max: limits::PAGE_SIZE as usize,
            size: Count,
            make: |_, _, n| {
                Call::Queue(pb::GetQueueRequest {
                    page_size: n as u32,
                    ..Default::default()
                })
            },
            at_max: ok,
        },
        Edge {
            rpc: "ListAssignments",
            field: "analyst_id",
            max: limits::ANALYST_ID,
            size: Text(letters),
            make: |_, v, _| {
                Call::Assignments(pb::ListAssignmentsRequest {
                    analyst_id: v,
                    ..Default::default()
                })
            },
            at_max: ok,
        },
        Edge {
            rpc: "ListAssignments",
            field: "states",
            max: limits::FILTER_VALUES,
            size: Count,
            make: |_, _, n| {
                Call::Assignments(pb::ListAssignmentsRequest {
                    states: vec![pb::AssignmentState::PendingAck as i32; n],
                    ..Default::default()
                })
            },
            at_max: ok,
        },
        Edge {
            rpc: "ListAssignments",
            field: "page_size",
            max: limits::PAGE_SIZE as usize,
            size: Count,
            make: |_, _, n| {
                Call::Assignments(pb::ListAssignmentsRequest {
                    page_size: n as u32,
                    ..Default::default()
                })
            },
            at_max: ok,
        },
    ]
}

#[tokio::test]
async fn every_bounded_field_takes_its_maximum_and_refuses_one_more_by_name() {
    let (_db, pool, api, _) = routing("routing_limits").await;
    analyst(&api, "an.edge", pb::SkillModule::Printing, 3, 2).await;
    let stored = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT (SELECT count(*) FROM analysts) + (SELECT count(*) FROM analyst_shifts)",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    let refused = walk(&(), edges(), Nul::Second, |call| send(&api, call), stored).await;
    assert!(refused > 25, "{refused} refusals checked");
}
