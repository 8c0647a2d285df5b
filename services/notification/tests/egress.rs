//! Outbound requests cannot reach inside: a tenant's webhook pointing at
//! loopback, the cloud metadata address, a private range or a name that
//! resolves inside is refused when registered and again when sent, against
//! the address actually connected to; the attempt says only "unreachable".
//! Every receiver here is on 127.0.0.1: no traffic leaves loopback.

mod common;

use common::*;
use wardline_proto::common::Priority;
use wardline_proto::events::DeliveryStatus;
use wardline_proto::notification::{
    CreateWebhookEndpointRequest, DeliveryState, ErrorClass, EventKind, GetDeliveryRequest,
    ListDeliveriesRequest, NotificationChannel,
};

fn hook(request_id: &str, url: &str) -> CreateWebhookEndpointRequest {
    CreateWebhookEndpointRequest {
        request_id: request_id.into(),
        url: url.into(),
        event_kinds: vec![EventKind::TicketReceived as i32],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_addresses_are_refused_at_registration() {
    // No allow-list at all (and so no gateways on 127.0.0.1).
    let h = spawn_with(|v| {
        v.retain(|(k, _)| {
            !k.starts_with("NOTIFICATION_SMS_") && !k.starts_with("NOTIFICATION_PAGER_")
        });
        set(v, "NOTIFICATION_EGRESS_ALLOW_HOSTS", "");
    })
    .await;
    let mut hooks = h.webhooks();
    for (i, url) in [
        "https://127.0.0.1:9104/metrics",
        "https://169.254.169.254/latest/meta-data/",
        "https://10.0.0.1/",
        "https://192.168.1.20/hook",
        "https://100.64.0.1/",
        "https://0.0.0.0/",
        "https://[::1]/",
        "https://[::ffff:127.0.0.1]/",
        "https://[fd00::1]/",
        "https://[fe80::1]/",
        // A name that resolves to loopback.
        "https://localhost:9104/metrics",
    ]
    .into_iter()
    .enumerate()
    {
        let e = hooks
            .create_webhook_endpoint(hook(&format!("inside-{i}"), url))
            .await
            .expect_err(url);
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{url}");
        assert!(
            e.message().starts_with("url: must be a public address"),
            "{url}: {}",
            e.message()
        );
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_points_inside_at_send_time_is_not_connected_to() {
    // The address 127.0.0.1 is allowed (the receivers of this test), not
    // 127.0.0.2, nor a name that resolves to 127.0.0.1.
    let h = spawn().await;
    let allowed = wardline_testkit::HttpSink::start().await;
    let mut hooks = h.webhooks();
    for (id, url) in [
        ("good", allowed.url("/ok")),
        ("literal", allowed.url("/literal")),
        ("name", allowed.url("/name")),
    ] {
        hooks.create_webhook_endpoint(hook(id, &url)).await.unwrap();
    }
    // What a rebinding name or an endpoint stored before the guard looks
    // like when the send comes: the same receiver port behind an address
    // the policy refuses (an IP literal, and a name resolving to loopback).
    let port = allowed
        .url("/")
        .split(':')
        .nth(2)
        .unwrap()
        .trim_end_matches('/')
        .to_owned();
    let pool = h.db.pool().await;
    for (path, url) in [
        ("/literal", format!("http://127.0.0.2:{port}/literal")),
        ("/name", format!("http://localhost:{port}/name")),
    ] {
        sqlx::query("UPDATE webhook_endpoints SET url = $1 WHERE url LIKE '%' || $2")
            .bind(&url)
            .bind(path)
            .execute(&pool)
            .await
            .unwrap();
    }

    h.publish(&ticket_created(&new_id(), "STM-000901", Priority::P2))
        .await;
    let hooks_done = wardline_testkit::eventually(20, "three finished webhooks", || {
        let mut c = h.deliveries();
        async move {
            let ds = c
                .list_deliveries(ListDeliveriesRequest {
                    channels: vec![NotificationChannel::Webhook as i32],
                    states: vec![DeliveryState::Finished as i32],
                    ..Default::default()
                })
                .await
                .ok()?
                .into_inner()
                .deliveries;
            (ds.len() == 3).then_some(ds)
        }
    })
    .await;

    // The allowed one arrived; nothing reached the receiver any other way.
    let got = allowed.received();
    assert_eq!(got.len(), 1, "only the allowed endpoint was connected to");
    assert_eq!(got[0].path, "/ok");
    let mut failed = 0;
    for d in hooks_done {
        let d = h
            .deliveries()
            .get_delivery(GetDeliveryRequest {
                delivery_id: d.delivery_id,
            })
            .await
            .unwrap()
            .into_inner();
        if d.address.ends_with("/ok") {
            assert_eq!(d.outcome, DeliveryStatus::Delivered as i32);
            continue;
        }
        failed += 1;
        // Refused for good (no retries against an address that is inside),
        // and reported as coarsely as a closed port or a timeout would be.
        assert_eq!(d.outcome, DeliveryStatus::Failed as i32, "{}", d.address);
        assert_eq!(d.attempts.len(), 1, "{}", d.address);
        let a = &d.attempts[0];
        assert_eq!(
            a.error_class,
            ErrorClass::Unreachable as i32,
            "{}",
            d.address
        );
        assert_eq!(a.status_code, 0);
    }
    assert_eq!(failed, 2);
    h.stop().await;
}
