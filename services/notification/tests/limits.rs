//! Every bounded field of notification's API, at its edge, against one
//! real notification: the maximum (`wardline_notification::limits`) is
//! accepted, one past it and a NUL byte are INVALID_ARGUMENT naming the
//! field, and nothing refused was written. The cases are the table
//! docs/limits.md shows.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};

use common::*;
use tonic::{Code, Status};
use wardline_notification::limits;
use wardline_proto::notification::*;
use wardline_testkit::limits::{Nul, Size, walk};

type Edge = wardline_testkit::limits::Edge<Ctx, Call>;

enum Call {
    Upsert(UpsertRecipientRequest),
    ListRecipients(ListRecipientsRequest),
    CreateWebhook(CreateWebhookEndpointRequest),
    Rotate(RotateWebhookSecretRequest),
    SetTemplate(SetTemplateOverrideRequest),
    ListDeliveries(ListDeliveriesRequest),
    ListDeadLetters(ListDeadLettersRequest),
}

/// What the requests need: an endpoint to rotate, fresh request ids.
struct Ctx {
    endpoint_id: String,
    base_url: String,
    seq: AtomicU32,
}

impl Ctx {
    fn next(&self) -> u32 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }
    fn rid(&self) -> String {
        format!("edge-{}", self.next())
    }
}

fn letters(n: usize) -> String {
    "a".repeat(n)
}

fn custom(ctx: &Ctx) -> Recipient {
    Recipient {
        kind: RecipientKind::Custom as i32,
        name: format!("Edge recipient {}", ctx.next()),
        addresses: vec![ChannelAddress {
            channel: NotificationChannel::Email as i32,
            address: "edge@example.org".into(),
        }],
        ..Default::default()
    }
}

fn upsert(ctx: &Ctx, recipient: Recipient) -> Call {
    Call::Upsert(UpsertRecipientRequest {
        request_id: ctx.rid(),
        recipient: Some(recipient),
        expected_version: 0,
    })
}

fn address(channel: NotificationChannel, address: String) -> ChannelAddress {
    ChannelAddress {
        channel: channel as i32,
        address,
    }
}

fn template(ctx: &Ctx, subject: String, body: String) -> Call {
    Call::SetTemplate(SetTemplateOverrideRequest {
        request_id: ctx.rid(),
        event_kind: EventKind::TicketReceived as i32,
        channel: NotificationChannel::Email as i32,
        subject,
        body,
        reset: false,
        expected_version: 0,
    })
}

fn edges() -> Vec<Edge> {
    use Size::{Count, Text};
    vec![
        Edge {
            rpc: "UpsertRecipient",
            at_max: Code::Ok,
            field: "request_id",
            max: limits::REQUEST_ID,
            size: Text(|n| "k".repeat(n)),
            make: |c, v, _| {
                // Unique, the same length, the end (where a NUL goes) kept.
                let mut id = v;
                let seq = c.next().to_string();
                id.replace_range(..seq.len(), &seq);
                Call::Upsert(UpsertRecipientRequest {
                    request_id: id,
                    recipient: Some(custom(c)),
                    expected_version: 0,
                })
            },
        },
        Edge {
            rpc: "UpsertRecipient",
            at_max: Code::Ok,
            field: "recipient.subject_id",
            max: limits::SUBJECT_ID,
            size: Text(letters),
            make: |c, v, _| {
                upsert(
                    c,
                    Recipient {
                        kind: RecipientKind::Caller as i32,
                        subject_id: v,
                        ..custom(c)
                    },
                )
            },
        },
        Edge {
            rpc: "UpsertRecipient",
            at_max: Code::Ok,
            field: "recipient.name",
            max: limits::NAME,
            size: Text(letters),
            make: |c, v, _| {
                upsert(
                    c,
                    Recipient {
                        name: v,
                        ..custom(c)
                    },
                )
            },
        },
        Edge {
            rpc: "UpsertRecipient",
            at_max: Code::Ok,
            field: "recipient.addresses[0].address",
            max: limits::EMAIL,
            size: Text(|n| format!("{}@example.org", "r".repeat(n - 12))),
            make: |c, v, _| {
                upsert(
                    c,
                    Recipient {
                        addresses: vec![address(NotificationChannel::Email, v)],
                        ..custom(c)
                    },
                )
            },
        },
        Edge {
            rpc: "UpsertRecipient",
            at_max: Code::Ok,
            field: "recipient.addresses[0].address",
            max: limits::PAGER,
            size: Text(letters),
            make: |c, v, _| {
                upsert(
                    c,
                    Recipient {
                        addresses: vec![address(NotificationChannel::Pager, v)],
                        ..custom(c)
                    },
                )
            },
        },
        Edge {
            rpc: "UpsertRecipient",
            at_max: Code::Ok,
            field: "recipient.preferences.subscriptions[0].channels",
            max: limits::SUBSCRIPTION_CHANNELS,
            size: Count,
            make: |c, _, n| {
                upsert(
                    c,
                    Recipient {
                        preferences: Some(Preferences {
                            subscriptions: vec![Subscription {
                                event_kind: EventKind::TicketReceived as i32,
                                channels: vec![NotificationChannel::Email as i32; n],
                            }],
                            quiet_hours: None,
                        }),
                        ..custom(c)
                    },
                )
            },
        },
        Edge {
            rpc: "ListRecipients",
            at_max: Code::Ok,
            field: "subject_id",
            max: limits::SUBJECT_ID,
            size: Text(letters),
            make: |_, v, _| {
                Call::ListRecipients(ListRecipientsRequest {
                    subject_id: v,
                    ..Default::default()
                })
            },
        },
        Edge {
            rpc: "ListRecipients",
            at_max: Code::Ok,
            field: "kinds",
            max: limits::FILTER_VALUES,
            size: Count,
            make: |_, _, n| {
                Call::ListRecipients(ListRecipientsRequest {
                    kinds: vec![RecipientKind::Custom as i32; n],
                    ..Default::default()
                })
            },
        },
        Edge {
            rpc: "ListRecipients",
            at_max: Code::Ok,
            field: "page_size",
            max: limits::PAGE_SIZE as usize,
            size: Count,
            make: |_, _, n| {
                Call::ListRecipients(ListRecipientsRequest {
                    page_size: n as u32,
                    ..Default::default()
                })
            },
        },
        Edge {
            rpc: "CreateWebhookEndpoint",
            at_max: Code::Ok,
            field: "url",
            max: limits::URL,
            // The test's own receiver (allow-listed), padded in the path.
            size: Text(|n| format!("http://127.0.0.1:9/{}", "p".repeat(n - 19))),
            make: |c, v, _| {
                Call::CreateWebhook(CreateWebhookEndpointRequest {
                    request_id: c.rid(),
                    url: v,
                    event_kinds: vec![EventKind::TicketReceived as i32],
                })
            },
        },
        Edge {
            rpc: "RotateWebhookSecret",
            at_max: Code::Ok,
            field: "overlap_seconds",
            max: limits::OVERLAP_SECONDS as usize,
            size: Count,
            make: |c, _, n| {
                Call::Rotate(RotateWebhookSecretRequest {
                    request_id: c.rid(),
                    endpoint_id: c.endpoint_id.clone(),
                    overlap_seconds: n as u32,
                })
            },
        },
        Edge {
            rpc: "SetTemplateOverride",
            at_max: Code::Ok,
            field: "subject",
            max: limits::TEMPLATE_SUBJECT,
            size: Text(letters),
            make: |c, v, _| template(c, v, "Ticket {{ ticket.number }}".into()),
        },
        Edge {
            rpc: "SetTemplateOverride",
            at_max: Code::Ok,
            field: "body",
            max: limits::TEMPLATE_BODY,
            size: Text(letters),
            make: |c, v, _| template(c, "Ticket received".into(), v),
        },
        Edge {
            rpc: "ListDeliveries",
            at_max: Code::Ok,
            field: "event_kinds",
            max: limits::FILTER_VALUES,
            size: Count,
            make: |_, _, n| {
                Call::ListDeliveries(ListDeliveriesRequest {
                    event_kinds: vec![EventKind::TicketReceived as i32; n],
                    ..Default::default()
                })
            },
        },
        Edge {
            rpc: "ListDeliveries",
            at_max: Code::Ok,
            field: "page_size",
            max: limits::PAGE_SIZE as usize,
            size: Count,
            make: |_, _, n| {
                Call::ListDeliveries(ListDeliveriesRequest {
                    page_size: n as u32,
                    ..Default::default()
                })
            },
        },
        Edge {
            rpc: "ListDeadLetters",
            at_max: Code::Ok,
            field: "channels",
            max: limits::FILTER_VALUES,
            size: Count,
            make: |_, _, n| {
                Call::ListDeadLetters(ListDeadLettersRequest {
                    channels: vec![NotificationChannel::Email as i32; n],
                    ..Default::default()
                })
            },
        },
    ]
}

async fn send(h: &Harness, call: Call) -> Result<(), Status> {
    match call {
        Call::Upsert(r) => h.recipients().upsert_recipient(r).await.map(drop),
        Call::ListRecipients(r) => h.recipients().list_recipients(r).await.map(drop),
        Call::CreateWebhook(r) => h.webhooks().create_webhook_endpoint(r).await.map(drop),
        Call::Rotate(r) => h.webhooks().rotate_webhook_secret(r).await.map(drop),
        Call::SetTemplate(r) => h.templates().set_template_override(r).await.map(drop),
        Call::ListDeliveries(r) => h.deliveries().list_deliveries(r).await.map(drop),
        Call::ListDeadLetters(r) => h.deliveries().list_dead_letters(r).await.map(drop),
    }
}

#[tokio::test]
async fn every_bounded_field_takes_its_maximum_and_refuses_one_more_by_name() {
    let h = spawn().await;
    let endpoint = h
        .webhooks()
        .create_webhook_endpoint(CreateWebhookEndpointRequest {
            request_id: "endpoint".into(),
            url: "http://127.0.0.1:9/hook".into(),
            event_kinds: vec![EventKind::TicketResolved as i32],
        })
        .await
        .unwrap()
        .into_inner()
        .endpoint
        .unwrap();
    let ctx = Ctx {
        endpoint_id: endpoint.endpoint_id,
        base_url: endpoint.url,
        seq: AtomicU32::new(0),
    };
    assert!(ctx.base_url.starts_with("http://127.0.0.1:9/"));
    let pool = h.db.pool().await;
    let stored = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT (SELECT count(*) FROM recipients) + (SELECT count(*) FROM webhook_endpoints)
                  + (SELECT count(*) FROM template_overrides)",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    let refused = walk(
        &ctx,
        edges(),
        Nul::SecondToLast,
        |call| send(&h, call),
        stored,
    )
    .await;
    assert!(refused > 20, "{refused} refusals checked");
    h.stop().await;
}
