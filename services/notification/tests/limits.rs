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

enum Size {
    Text(fn(usize) -> String),
    Count,
}

struct Edge {
    rpc: &'static str,
    field: &'static str,
    max: usize,
    size: Size,
    make: fn(&Ctx, String, usize) -> Call,
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
            field: "subject",
            max: limits::TEMPLATE_SUBJECT,
            size: Text(letters),
            make: |c, v, _| template(c, v, "Ticket {{ ticket.number }}".into()),
        },
        Edge {
            rpc: "SetTemplateOverride",
            field: "body",
            max: limits::TEMPLATE_BODY,
            size: Text(letters),
            make: |c, v, _| template(c, "Ticket received".into(), v),
        },
        Edge {
            rpc: "ListDeliveries",
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
    let mut refused = 0;
    for edge in edges() {
        let case = format!("{} {} (max {})", edge.rpc, edge.field, edge.max);
        let (at, past, control) = match edge.size {
            Size::Text(fill) => {
                let mut nul = fill(edge.max);
                let i = nul.len() - 2;
                nul.replace_range(i..i + 1, "\0");
                (
                    (edge.make)(&ctx, fill(edge.max), 0),
                    (edge.make)(&ctx, fill(edge.max + 1), 0),
                    Some((edge.make)(&ctx, nul, 0)),
                )
            }
            Size::Count => (
                (edge.make)(&ctx, String::new(), edge.max),
                (edge.make)(&ctx, String::new(), edge.max + 1),
                None,
            ),
        };
        let answer = send(&h, at).await;
        assert!(
            answer.is_ok(),
            "{case}: the maximum is accepted: {answer:?}"
        );
        let before = stored().await;
        for (what, call) in [
            ("one past the maximum", Some(past)),
            ("a NUL byte", control),
        ] {
            let Some(call) = call else { continue };
            let e = send(&h, call)
                .await
                .expect_err(&format!("{case}: {what} is refused"));
            assert_eq!(e.code(), Code::InvalidArgument, "{case}: {what}: {e:?}");
            assert!(
                e.message().starts_with(&format!("{}:", edge.field)),
                "{case}: {what} names the field: {}",
                e.message()
            );
            refused += 1;
        }
        assert_eq!(stored().await, before, "{case}: nothing refused was stored");
    }
    assert!(refused > 20, "{refused} refusals checked");
    h.stop().await;
}
