//! Every change to a tenant's billing is on record (45 CFR 164.312(b),
//! issue 15 part 4): who, with which roles, for which tenant, which RPC,
//! which contract or invoice; ids only. A replayed request adds nothing.

mod common;

use wardline_kit::auth::Role;
use wardline_proto::billing::contract_service_client::ContractServiceClient;
use wardline_proto::billing::invoice_service_client::InvoiceServiceClient;
use wardline_proto::billing::*;
use wardline_proto::common::audit_service_client::AuditServiceClient;
use wardline_proto::common::{AuditRecord, ListAuditRecordsRequest};
use wardline_testkit::Auth;

const TENANT: &str = "stmarys";

/// A record's method, subject, roles, resource ids and request id.
type Seen<'a> = (&'a str, &'a str, Vec<&'a str>, Vec<&'a str>, &'a str);

async fn records(grpc: std::net::SocketAddr, auth: Auth) -> Vec<AuditRecord> {
    AuditServiceClient::with_interceptor(wardline_testkit::channel(grpc), auth)
        .list_audit_records(ListAuditRecordsRequest::default())
        .await
        .expect("audit records")
        .into_inner()
        .records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn who_changed_a_contract_and_issued_an_invoice_is_on_record() {
    let b = common::start("billing_audit").await;
    let js = b.nats.jetstream().await;
    let tenant = wardline_testkit::build::tenant_created(TENANT, "America/Chicago");
    wardline_testkit::build::publish(&js, &tenant, &tenant.event_id).await;

    // The vendor's operator writes the contract (from 2020, so its first
    // month has ended); the vendor's finance lead issues January.
    let ops = Auth::new(
        &wardline_testkit::token("ops", "*", &[Role::VendorAdmin]),
        Some(TENANT),
    );
    let finance = Auth::new(
        &wardline_testkit::token("cfo", "*", &[Role::VendorAdmin, Role::Billing]),
        Some(TENANT),
    );
    let create = CreateContractVersionRequest {
        request_id: "contract-1".into(),
        contract: Some(wardline_billing::contract::example("USD", "2020-01-01")),
        expected_latest_version: 0,
    };
    let contracts =
        ContractServiceClient::with_interceptor(wardline_testkit::channel(b.grpc), ops.clone());
    let contract = wardline_testkit::eventually(20, "billing knows the tenant", || {
        let mut c = contracts.clone();
        let r = create.clone();
        async move { c.create_contract_version(r).await.ok() }
    })
    .await
    .into_inner();
    // A retry of the same request is a replay: no second record.
    contracts
        .clone()
        .create_contract_version(create.clone())
        .await
        .expect("replay");
    let invoice =
        InvoiceServiceClient::with_interceptor(wardline_testkit::channel(b.grpc), finance)
            .issue_invoice(IssueInvoiceRequest {
                request_id: "issue-2020-01".into(),
                period: "2020-01".into(),
            })
            .await
            .expect("issue")
            .into_inner();

    // The tenant's admin reads their trail, newest first.
    let admin = Auth::new(
        &wardline_testkit::token("admin", TENANT, &[Role::TenantAdmin]),
        None,
    );
    let seen = records(b.grpc, admin).await;
    let summary: Vec<Seen> = seen
        .iter()
        .map(|r| {
            assert_eq!(r.tenant_id, TENANT);
            assert!(r.peer.starts_with("127.0.0.1:"), "peer {:?}", r.peer);
            (
                r.method.as_str(),
                r.subject.as_str(),
                r.roles.iter().map(String::as_str).collect(),
                r.resource_ids.iter().map(String::as_str).collect(),
                r.request_id.as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "InvoiceService/IssueInvoice",
                "cfo",
                vec!["vendor_admin", "billing"],
                vec![invoice.invoice_id.as_str(), "2020-01"],
                "issue-2020-01",
            ),
            (
                "ContractService/CreateContractVersion",
                "ops",
                vec!["vendor_admin"],
                vec![contract.contract_id.as_str(), "v1"],
                "contract-1",
            ),
        ]
    );

    // Another tenant's admin sees none of it.
    let other = Auth::new(
        &wardline_testkit::token("admin", "lakeside", &[Role::TenantAdmin]),
        None,
    );
    assert!(records(b.grpc, other).await.is_empty());

    // Ids only: no contract terms (its currency, say) in any record.
    let pool = b.db.pool().await;
    let leaked: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log a WHERE a::text LIKE '%USD%'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(leaked, 0);
    b.stop().await;
}
