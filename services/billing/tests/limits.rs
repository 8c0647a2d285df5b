//! Every bounded field of billing's API, at its edge, against one real
//! billing: the maximum (`wardline_billing::limits`) is accepted, one past
//! it and a NUL byte are INVALID_ARGUMENT naming the field, and nothing
//! refused was written. The cases are the table docs/limits.md shows.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};

use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Status};
use wardline_billing::limits;
use wardline_kit::auth::Role;
use wardline_proto::billing::contract_service_client::ContractServiceClient;
use wardline_proto::billing::invoice_service_client::InvoiceServiceClient;
use wardline_proto::billing::usage_service_client::UsageServiceClient;
use wardline_proto::billing::*;
use wardline_proto::common::Money;
use wardline_testkit::Auth;
use wardline_testkit::limits::{Nul, Size, walk};

const TENANT: &str = "stmarys";

type Edge = wardline_testkit::limits::Edge<Ctx, Call>;

type Contracts = ContractServiceClient<InterceptedService<Channel, Auth>>;
type Usages = UsageServiceClient<InterceptedService<Channel, Auth>>;
type Invoices = InvoiceServiceClient<InterceptedService<Channel, Auth>>;

enum Call {
    Contract(Box<CreateContractVersionRequest>),
    Versions(ListContractVersionsRequest),
    Charges(ListChargesRequest),
    Unbilled(ListUnbilledRequest),
    Invoices(ListInvoicesRequest),
}

/// The contract versions so far (each accepted maximum adds one) and
/// fresh request ids.
struct Ctx {
    versions: AtomicU32,
    seq: AtomicU32,
}

impl Ctx {
    fn rid(&self) -> String {
        format!("edge-{}", self.seq.fetch_add(1, Ordering::Relaxed))
    }
}

/// The next valid version: the example terms, starting a day after the
/// previous one (all in the future), with `tweak` applied.
fn version(ctx: &Ctx, tweak: impl FnOnce(&mut Contract)) -> Call {
    let latest = ctx.versions.load(Ordering::Relaxed);
    let from =
        chrono::NaiveDate::from_ymd_opt(2031, 1, 1).unwrap() + chrono::Days::new(u64::from(latest));
    let mut c = wardline_billing::contract::example("USD", &from.to_string());
    tweak(&mut c);
    Call::Contract(Box::new(CreateContractVersionRequest {
        request_id: ctx.rid(),
        contract: Some(c),
        expected_latest_version: latest,
    }))
}

fn edges() -> Vec<Edge> {
    use Size::{Count, Text};
    vec![
        Edge {
            rpc: "CreateContractVersion",
            at_max: Code::Ok,
            field: "request_id",
            max: limits::REQUEST_ID,
            size: Text(|n| "k".repeat(n)),
            make: |c, v, _| {
                let Call::Contract(mut r) = version(c, |_| {}) else {
                    unreachable!()
                };
                let seq = r.request_id.clone();
                let mut id = v;
                id.replace_range(..seq.len(), &seq);
                r.request_id = id;
                Call::Contract(r)
            },
        },
        Edge {
            rpc: "CreateContractVersion",
            at_max: Code::Ok,
            field: "contract.holidays",
            max: limits::HOLIDAYS,
            size: Count,
            make: |c, _, n| {
                version(c, |k| {
                    let first = chrono::NaiveDate::from_ymd_opt(2031, 1, 1).unwrap();
                    k.holidays = (0..n as u64)
                        .map(|d| (first + chrono::Days::new(d)).to_string())
                        .collect();
                })
            },
        },
        Edge {
            rpc: "CreateContractVersion",
            at_max: Code::Ok,
            field: "contract.after_hours_surcharge_bps",
            max: limits::SURCHARGE_BPS as usize,
            size: Count,
            make: |c, _, n| version(c, |k| k.after_hours_surcharge_bps = n as u32),
        },
        Edge {
            rpc: "CreateContractVersion",
            at_max: Code::Ok,
            field: "contract.sla_credits.cap_bps",
            max: limits::CREDIT_CAP_BPS as usize,
            size: Count,
            make: |c, _, n| {
                version(c, |k| {
                    k.sla_credits.get_or_insert_with(Default::default).cap_bps = n as u32
                })
            },
        },
        Edge {
            rpc: "CreateContractVersion",
            at_max: Code::Ok,
            field: "contract.overage_price_per_call.minor_units",
            max: limits::MONEY_MINOR_UNITS as usize,
            size: Count,
            make: |c, _, n| {
                version(c, |k| {
                    k.overage_price_per_call = Some(Money {
                        currency: "USD".into(),
                        minor_units: n as i64,
                    })
                })
            },
        },
        Edge {
            rpc: "ListContractVersions",
            at_max: Code::Ok,
            field: "page_size",
            max: limits::PAGE_SIZE as usize,
            size: Count,
            make: |_, _, n| {
                Call::Versions(ListContractVersionsRequest {
                    page_size: n as u32,
                    page_token: String::new(),
                })
            },
        },
        Edge {
            rpc: "ListCharges",
            at_max: Code::Ok,
            field: "kinds",
            max: limits::FILTER_VALUES,
            size: Count,
            make: |_, _, n| {
                Call::Charges(ListChargesRequest {
                    kinds: vec![LineKind::Overage as i32; n],
                    ..Default::default()
                })
            },
        },
        Edge {
            rpc: "ListCharges",
            at_max: Code::Ok,
            field: "page_size",
            max: limits::PAGE_SIZE as usize,
            size: Count,
            make: |_, _, n| {
                Call::Charges(ListChargesRequest {
                    page_size: n as u32,
                    ..Default::default()
                })
            },
        },
        Edge {
            rpc: "ListUnbilled",
            at_max: Code::Ok,
            field: "tenant_id",
            max: limits::TENANT_ID,
            size: Text(|n| "a".repeat(n)),
            make: |_, v, _| {
                Call::Unbilled(ListUnbilledRequest {
                    tenant_id: v,
                    ..Default::default()
                })
            },
        },
        Edge {
            rpc: "ListUnbilled",
            at_max: Code::Ok,
            field: "page_size",
            max: limits::PAGE_SIZE as usize,
            size: Count,
            make: |_, _, n| {
                Call::Unbilled(ListUnbilledRequest {
                    page_size: n as u32,
                    ..Default::default()
                })
            },
        },
        Edge {
            rpc: "ListInvoices",
            at_max: Code::Ok,
            field: "statuses",
            max: limits::FILTER_VALUES,
            size: Count,
            make: |_, _, n| {
                Call::Invoices(ListInvoicesRequest {
                    statuses: vec![InvoiceStatus::Draft as i32; n],
                    ..Default::default()
                })
            },
        },
        Edge {
            rpc: "ListInvoices",
            at_max: Code::Ok,
            field: "page_size",
            max: limits::PAGE_SIZE as usize,
            size: Count,
            make: |_, _, n| {
                Call::Invoices(ListInvoicesRequest {
                    page_size: n as u32,
                    ..Default::default()
                })
            },
        },
    ]
}

async fn send(
    ctx: &Ctx,
    (contracts, usage, invoices): &mut (Contracts, Usages, Invoices),
    call: Call,
) -> Result<(), Status> {
    match call {
        Call::Contract(r) => {
            contracts.create_contract_version(*r).await?;
            ctx.versions.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        Call::Versions(r) => contracts.list_contract_versions(r).await.map(drop),
        Call::Charges(r) => usage.list_charges(r).await.map(drop),
        Call::Unbilled(r) => usage.list_unbilled(r).await.map(drop),
        Call::Invoices(r) => invoices.list_invoices(r).await.map(drop),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bounded_field_takes_its_maximum_and_refuses_one_more_by_name() {
    let b = common::start("billing_limits").await;
    let grpc = b.grpc;

    // Billing learns of the tenant from intake's event.
    let js = b.nats.jetstream().await;
    let tenant = wardline_testkit::build::tenant_created(TENANT, "America/Chicago");
    wardline_testkit::build::publish(&js, &tenant, &tenant.event_id).await;
    let vendor = Auth::new(
        &wardline_testkit::token("ops", "*", &[Role::VendorAdmin]),
        Some(TENANT),
    );
    let channel = wardline_testkit::channel(grpc);
    let clients = (
        ContractServiceClient::with_interceptor(channel.clone(), vendor.clone()),
        UsageServiceClient::with_interceptor(channel.clone(), vendor.clone()),
        InvoiceServiceClient::with_interceptor(channel, vendor),
    );
    let ctx = Ctx {
        versions: AtomicU32::new(0),
        seq: AtomicU32::new(0),
    };
    wardline_testkit::eventually(20, "billing knows the tenant", || {
        let mut contracts = clients.0.clone();
        let first = version(&ctx, |_| {});
        async move {
            let Call::Contract(r) = first else {
                unreachable!()
            };
            contracts.create_contract_version(*r).await.ok()
        }
    })
    .await;
    ctx.versions.store(1, Ordering::Relaxed);

    let pool = b.db.pool().await;
    let stored = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM contract_versions")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    let ctx = &ctx;
    let refused = walk(
        ctx,
        edges(),
        Nul::SecondToLast,
        |call| {
            let mut clients = clients.clone();
            async move { send(ctx, &mut clients, call).await }
        },
        stored,
    )
    .await;
    assert!(refused > 12, "{refused} refusals checked");
}
