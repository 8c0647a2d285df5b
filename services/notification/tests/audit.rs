//! Every change to a tenant's notification set-up is on record
//! (45 CFR 164.312(b), issue 15 part 4): who, with which roles, which RPC,
//! which recipient, endpoint or template; ids only, never a name, an
//! address, a URL, a secret or a template's text.

mod common;

use common::*;
use wardline_kit::auth::Role;
use wardline_proto::common::audit_service_client::AuditServiceClient;
use wardline_proto::common::{AuditRecord, ListAuditRecordsRequest};
use wardline_proto::notification::webhook_service_client::WebhookServiceClient;
use wardline_proto::notification::{
    ChannelAddress, CreateWebhookEndpointRequest, DeleteWebhookEndpointRequest, EventKind,
    NotificationChannel, Recipient, RecipientKind, RotateWebhookSecretRequest,
    SetTemplateOverrideRequest, UpsertRecipientRequest,
};
use wardline_testkit::Auth;

/// A record's method, subject, roles and resource ids.
type Seen<'a> = (&'a str, &'a str, Vec<&'a str>, Vec<&'a str>);

async fn records(h: &Harness, auth: Auth) -> Vec<AuditRecord> {
    AuditServiceClient::with_interceptor(wardline_testkit::channel(h.grpc), auth)
        .list_audit_records(ListAuditRecordsRequest::default())
        .await
        .expect("audit records")
        .into_inner()
        .records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn who_changed_recipients_webhooks_and_templates_is_on_record() {
    let h = spawn().await;
    let receiver = wardline_testkit::HttpSink::start().await;

    // The tenant's admin adds the unit manager to be texted.
    let manager = h
        .recipients()
        .upsert_recipient(UpsertRecipientRequest {
            request_id: "manager-1".into(),
            recipient: Some(Recipient {
                kind: RecipientKind::Custom as i32,
                name: "ICU unit manager".into(),
                addresses: vec![ChannelAddress {
                    channel: NotificationChannel::Sms as i32,
                    address: "+13125550123".into(),
                }],
                ..Default::default()
            }),
            expected_version: 0,
        })
        .await
        .expect("upsert recipient")
        .into_inner();

    // The vendor's integrator registers the hospital's webhook and rotates
    // its secret; the tenant's admin later deletes it.
    let vendor = Auth::new(
        &wardline_testkit::token("integrator", "*", &[Role::VendorAdmin]),
        Some(TENANT),
    );
    let mut hooks =
        WebhookServiceClient::with_interceptor(wardline_testkit::channel(h.grpc), vendor);
    let created = hooks
        .create_webhook_endpoint(CreateWebhookEndpointRequest {
            request_id: "hook-1".into(),
            url: receiver.url("/secret-hook-path"),
            event_kinds: vec![EventKind::TicketReceived as i32],
        })
        .await
        .expect("create webhook")
        .into_inner();
    let endpoint = created.endpoint.expect("endpoint").endpoint_id;
    let rotated = hooks
        .rotate_webhook_secret(RotateWebhookSecretRequest {
            request_id: "rotate-1".into(),
            endpoint_id: endpoint.clone(),
            overlap_seconds: 0,
        })
        .await
        .expect("rotate")
        .into_inner();
    // A replayed rotation answers again and adds no record.
    hooks
        .rotate_webhook_secret(RotateWebhookSecretRequest {
            request_id: "rotate-1".into(),
            endpoint_id: endpoint.clone(),
            overlap_seconds: 0,
        })
        .await
        .expect("replayed rotation");
    h.templates()
        .set_template_override(SetTemplateOverrideRequest {
            request_id: "template-1".into(),
            event_kind: EventKind::TicketReceived as i32,
            channel: NotificationChannel::Email as i32,
            subject: "Desk: {{ ticket.number }} received".into(),
            body: "Pinecone priority {{ ticket.priority }}".into(),
            reset: false,
            expected_version: 0,
        })
        .await
        .expect("template override");
    h.webhooks()
        .delete_webhook_endpoint(DeleteWebhookEndpointRequest {
            request_id: "hook-gone".into(),
            endpoint_id: endpoint.clone(),
        })
        .await
        .expect("delete webhook");

    // The tenant's admin reads the trail, newest first.
    let seen = records(&h, admin_auth()).await;
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
            )
        })
        .collect();
    let template = format!(
        "{}/{}",
        EventKind::TicketReceived.as_str_name(),
        NotificationChannel::Email.as_str_name()
    );
    assert_eq!(
        summary,
        [
            (
                "WebhookService/DeleteWebhookEndpoint",
                "admin",
                vec!["tenant_admin"],
                vec![endpoint.as_str()],
            ),
            (
                "TemplateService/SetTemplateOverride",
                "admin",
                vec!["tenant_admin"],
                vec![template.as_str()],
            ),
            (
                "WebhookService/RotateWebhookSecret",
                "integrator",
                vec!["vendor_admin"],
                vec![endpoint.as_str()],
            ),
            (
                "WebhookService/CreateWebhookEndpoint",
                "integrator",
                vec!["vendor_admin"],
                vec![endpoint.as_str()],
            ),
            (
                "RecipientService/UpsertRecipient",
                "admin",
                vec!["tenant_admin"],
                vec![manager.recipient_id.as_str()],
            ),
        ]
    );
    assert_eq!(seen[2].request_id, "rotate-1");

    // Another hospital's admin sees none of it.
    let other = Auth::new(
        &wardline_testkit::token("admin", "lakeside", &[Role::TenantAdmin]),
        None,
    );
    assert!(records(&h, other).await.is_empty());

    // No name, number, URL, secret or template text in any record.
    let pool = h.db.pool().await;
    for text in [
        "ICU unit manager",
        "+13125550123",
        "secret-hook-path",
        created.secret.as_str(),
        rotated.secret.as_str(),
        "Pinecone",
    ] {
        let leaked: i64 =
            sqlx::query_scalar("SELECT count(*) FROM audit_log a WHERE strpos(a::text, $1) > 0")
                .bind(text)
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(leaked, 0, "{text:?} is on record");
    }
    h.stop().await;
}
