//! Notification's gRPC API: recipients and preferences, templates, quiet
//! hours, the per-tenant rate limit, tenancy and idempotency.

mod common;

use std::time::{Duration, Instant};

use common::*;
use wardline_kit::auth::Role;
use wardline_proto::common::Priority;
use wardline_proto::events::DeliveryStatus;
use wardline_proto::notification::{
    ChannelAddress, DeliveryState, EventKind, GetTemplateRequest, ListDeliveriesRequest,
    ListRecipientsRequest, NotificationChannel, Preferences, QuietHours, Recipient, RecipientKind,
    SetPreferencesRequest, SetTemplateOverrideRequest, Source, Subscription,
    UpsertRecipientRequest,
};
use wardline_testkit::Auth;

fn unit_manager() -> Recipient {
    Recipient {
        kind: RecipientKind::Custom as i32,
        name: "ICU unit manager".into(),
        addresses: vec![ChannelAddress {
            channel: NotificationChannel::Sms as i32,
            address: "+13125550123".into(),
        }],
        preferences: Some(Preferences {
            subscriptions: vec![Subscription {
                event_kind: EventKind::TicketReceived as i32,
                channels: vec![NotificationChannel::Sms as i32],
            }],
            quiet_hours: None,
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipients_subscribe_idempotently_within_their_tenant() {
    let h = spawn().await;
    let mut recipients = h.recipients();
    let req = UpsertRecipientRequest {
        request_id: "manager-1".into(),
        recipient: Some(unit_manager()),
        expected_version: 0,
    };
    let first = recipients
        .upsert_recipient(req.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.version, 1);
    assert_eq!(first.tenant_id, TENANT);
    assert_eq!(first.preferences_source, Source::Tenant as i32);
    let again = recipients
        .upsert_recipient(req.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        again.recipient_id, first.recipient_id,
        "a retry returns the first result"
    );
    let mut other = req.clone();
    other.recipient.as_mut().unwrap().name = "Someone else".into();
    let e = recipients.upsert_recipient(other).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(e.message().starts_with("request_id"));

    // Bad input names the field.
    let mut bad = unit_manager();
    bad.addresses[0].address = "5550123".into();
    let e = recipients
        .upsert_recipient(UpsertRecipientRequest {
            request_id: "bad-1".into(),
            recipient: Some(bad),
            expected_version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(
        e.message().starts_with("recipient.addresses[0].address"),
        "{}",
        e.message()
    );
    let mut no_address = unit_manager();
    no_address.addresses.clear();
    let e = recipients
        .upsert_recipient(UpsertRecipientRequest {
            request_id: "bad-2".into(),
            recipient: Some(no_address),
            expected_version: 0,
        })
        .await
        .unwrap_err();
    assert!(
        e.message()
            .starts_with("recipient.preferences.subscriptions[0].channels[0]"),
        "{}",
        e.message()
    );

    // The manager hears of new tickets by SMS; the caller by email.
    h.publish(&ticket_created(&new_id(), "STM-000300", Priority::P3))
        .await;
    h.finished(2, 20).await;
    let sms = h.sms.received();
    assert_eq!(sms.len(), 1);
    let body: serde_json::Value = serde_json::from_slice(&sms[0].body).unwrap();
    assert_eq!(body["to"], "+13125550123");
    assert!(body["body"].as_str().unwrap().contains("STM-000300"));
    assert_eq!(h.smtp.messages().len(), 1);

    // The caller became a recipient from the event.
    let listed = recipients
        .list_recipients(ListRecipientsRequest {
            kinds: vec![RecipientKind::Caller as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .recipients;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].subject_id, "caller-7");

    // Another tenant cannot see or change it: NOT_FOUND, like a missing id.
    let lakeside = Auth::new(
        &wardline_testkit::token("admin", "lakeside", &[Role::TenantAdmin]),
        None,
    );
    let e = h
        .recipients_as(lakeside)
        .set_preferences(SetPreferencesRequest {
            request_id: "p-1".into(),
            recipient_id: first.recipient_id.clone(),
            preferences: Some(Preferences::default()),
            expected_version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    // A requester may not manage recipients.
    let nurse = Auth::new(
        &wardline_testkit::token("rn", TENANT, &[Role::Requester]),
        None,
    );
    let e = h
        .recipients_as(nurse)
        .list_recipients(ListRecipientsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    // A stale expected_version is ABORTED.
    let e = recipients
        .set_preferences(SetPreferencesRequest {
            request_id: "p-2".into(),
            recipient_id: first.recipient_id.clone(),
            preferences: Some(Preferences::default()),
            expected_version: 7,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Aborted);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_analyst_mutes_their_assignment_emails() {
    let h = spawn().await;
    h.publish(&analyst("an.quiet", 1, false, false)).await;
    let mut admin = h.recipients();
    let me = wardline_testkit::eventually(10, "the analyst's recipient", || {
        let mut c = admin.clone();
        async move {
            c.list_recipients(ListRecipientsRequest {
                subject_id: "an.quiet".into(),
                ..Default::default()
            })
            .await
            .ok()?
            .into_inner()
            .recipients
            .into_iter()
            .next()
        }
    })
    .await;
    assert_eq!(me.kind, RecipientKind::Analyst as i32);
    let analyst_auth = Auth::new(
        &wardline_testkit::token("an.quiet", TENANT, &[Role::Analyst]),
        None,
    );
    h.recipients_as(analyst_auth)
        .set_preferences(SetPreferencesRequest {
            request_id: "mute".into(),
            recipient_id: me.recipient_id.clone(),
            preferences: Some(Preferences {
                subscriptions: vec![Subscription {
                    event_kind: EventKind::TicketAssigned as i32,
                    channels: vec![],
                }],
                quiet_hours: None,
            }),
            expected_version: 0,
        })
        .await
        .unwrap();
    // An analyst cannot change someone else's preferences.
    let other = Auth::new(
        &wardline_testkit::token("an.other", TENANT, &[Role::Analyst]),
        None,
    );
    let e = h
        .recipients_as(other)
        .set_preferences(SetPreferencesRequest {
            request_id: "mute-2".into(),
            recipient_id: me.recipient_id.clone(),
            preferences: Some(Preferences::default()),
            expected_version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    let id = new_id();
    h.publish(&ticket_created(&id, "STM-000400", Priority::P3))
        .await;
    h.publish(&ticket_assigned(&id, "STM-000400", "an.quiet", 1))
        .await;
    h.finished(2, 20).await;
    settle().await;
    assert!(
        h.smtp
            .messages()
            .iter()
            .all(|m| m.to != vec!["an.quiet@desk.example.org".to_owned()])
    );
    let _ = admin
        .list_recipients(ListRecipientsRequest::default())
        .await
        .unwrap();
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_are_overridden_per_tenant_and_may_only_name_ids_and_codes() {
    let h = spawn().await;
    let mut templates = h.templates();
    let default = templates
        .get_template(GetTemplateRequest {
            event_kind: EventKind::TicketReceived as i32,
            channel: NotificationChannel::Email as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(default.source, Source::Default as i32);
    let names: Vec<&str> = default.variables.iter().map(|v| v.name.as_str()).collect();
    assert!(names.contains(&"ticket.number") && names.contains(&"ticket.url"));
    assert!(
        !names
            .iter()
            .any(|n| n.contains("description") || n.contains("note"))
    );
    let set = |request_id: &str, subject: &str, body: &str| SetTemplateOverrideRequest {
        request_id: request_id.into(),
        event_kind: EventKind::TicketReceived as i32,
        channel: NotificationChannel::Email as i32,
        subject: subject.into(),
        body: body.into(),
        reset: false,
        expected_version: 0,
    };
    let e = templates
        .set_template_override(set("t-bad", "Hi", "{{ ticket.description }}"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(
        e.message()
            .starts_with("body: unknown variable ticket.description"),
        "{}",
        e.message()
    );
    let e = templates
        .set_template_override(set("t-bad-2", "Hi {{ ticket.number", "x"))
        .await
        .unwrap_err();
    assert!(
        e.message().starts_with("subject: syntax error"),
        "{}",
        e.message()
    );
    let custom = templates
        .set_template_override(set(
            "t-1",
            "St Mary's desk: {{ ticket.number }} received",
            "Priority {{ ticket.priority }}. {{ ticket.url }}",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(custom.source, Source::Tenant as i32);
    assert_eq!(custom.version, 1);
    h.publish(&ticket_created(&new_id(), "STM-000500", Priority::P2))
        .await;
    h.finished(1, 20).await;
    let mail = &h.smtp.messages()[0];
    assert_eq!(
        mail.header("Subject").unwrap(),
        "St Mary's desk: STM-000500 received"
    );
    assert!(mail.data.contains("Priority P2."));
    let reset = templates
        .set_template_override(SetTemplateOverrideRequest {
            request_id: "t-2".into(),
            event_kind: EventKind::TicketReceived as i32,
            channel: NotificationChannel::Email as i32,
            reset: true,
            expected_version: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reset.source, Source::Default as i32);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_template_is_refused_or_cut_off_and_other_messages_flow() {
    use wardline_proto::notification::{ErrorClass, GetDeliveryRequest};
    let h = spawn().await;
    let mut templates = h.templates();
    let set = |request_id: &str, body: String| SetTemplateOverrideRequest {
        request_id: request_id.into(),
        event_kind: EventKind::TicketReceived as i32,
        channel: NotificationChannel::Email as i32,
        subject: "Received {{ ticket.number }}".into(),
        body,
        reset: false,
        expected_version: 0,
    };
    let loops = "{% for a in ticket.url %}{% for b in ticket.url %}{% for c in ticket.url %}x{% endfor %}{% endfor %}{% endfor %}";
    for (i, (body, expect)) in [
        (loops.to_owned(), "body: exceeds the rendering budget"),
        (
            "{% set x = ticket.number %}{{ x }}".to_owned(),
            "body: {% set %} is not allowed",
        ),
        (
            "{{ ticket.url * 100000000 }}".to_owned(),
            "body: `*` is not allowed",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let e = templates
            .set_template_override(set(&format!("hostile-{i}"), body))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().starts_with(expect), "{}", e.message());
    }
    // Passes on the example values, explodes on one ticket number.
    let sneaky = format!(
        "{{% if ticket.number == \"STM-000666\" %}}{loops}{{% endif %}}Priority {{{{ ticket.priority }}}}."
    );
    templates
        .set_template_override(set("sneaky", sneaky))
        .await
        .unwrap();
    h.publish(&ticket_created(&new_id(), "STM-000666", Priority::P3))
        .await;
    h.publish(&ticket_created(&new_id(), "STM-000667", Priority::P2))
        .await;
    let done = h.finished(2, 20).await;
    let mails = h.smtp.messages();
    assert_eq!(mails.len(), 1, "the other ticket's message went out");
    assert_eq!(mails[0].header("Subject").unwrap(), "Received STM-000667");
    let cut = done.iter().find(|d| d.number == "STM-000666").unwrap();
    let cut = h
        .deliveries()
        .get_delivery(GetDeliveryRequest {
            delivery_id: cut.delivery_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cut.outcome, DeliveryStatus::Failed as i32);
    assert_eq!(cut.attempts[0].error_class, ErrorClass::RenderFailed as i32);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_hours_hold_routine_messages_but_never_a_p1() {
    let h = spawn().await;
    h.publish(&ticket_created(&new_id(), "STM-000600", Priority::P3))
        .await;
    let caller = wardline_testkit::eventually(10, "the caller recipient", || {
        let mut c = h.recipients();
        async move {
            c.list_recipients(ListRecipientsRequest::default())
                .await
                .ok()?
                .into_inner()
                .recipients
                .into_iter()
                .find(|r| r.kind == RecipientKind::Caller as i32)
        }
    })
    .await;
    h.finished(1, 20).await;
    // Quiet from an hour ago to an hour from now (UTC).
    let now = chrono::Utc::now();
    let hhmm = |t: chrono::DateTime<chrono::Utc>| t.format("%H:%M").to_string();
    h.recipients()
        .set_preferences(SetPreferencesRequest {
            request_id: "quiet".into(),
            recipient_id: caller.recipient_id.clone(),
            preferences: Some(Preferences {
                subscriptions: vec![],
                quiet_hours: Some(QuietHours {
                    start: hhmm(now - chrono::Duration::hours(1)),
                    end: hhmm(now + chrono::Duration::hours(1)),
                    time_zone: "UTC".into(),
                }),
            }),
            expected_version: 0,
        })
        .await
        .unwrap();
    h.publish(&ticket_created(&new_id(), "STM-000601", Priority::P3))
        .await;
    h.publish(&ticket_created(&new_id(), "STM-000602", Priority::P1))
        .await;
    h.finished(2, 20).await;
    let deferred = wardline_testkit::eventually(10, "a deferred delivery", || {
        let mut c = h.deliveries();
        async move {
            c.list_deliveries(ListDeliveriesRequest {
                states: vec![DeliveryState::Deferred as i32],
                ..Default::default()
            })
            .await
            .ok()?
            .into_inner()
            .deliveries
            .into_iter()
            .next()
        }
    })
    .await;
    assert_eq!(deferred.number, "STM-000601");
    let until = deferred.next_attempt_at.unwrap().seconds;
    assert!(
        (until - (now + chrono::Duration::hours(1)).timestamp()).abs() <= 60,
        "held until the quiet hours end"
    );
    settle().await;
    let sent: Vec<String> = h
        .smtp
        .messages()
        .iter()
        .map(|m| m.header("Subject").unwrap())
        .collect();
    assert!(
        sent.iter().any(|s| s.contains("STM-000602")),
        "the P1 went out: {sent:?}"
    );
    assert!(
        !sent.iter().any(|s| s.contains("STM-000601")),
        "the P3 waits: {sent:?}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tenant_rate_limit_spreads_messages_without_failing_them() {
    let h = spawn_with(|v| {
        set(v, "NOTIFICATION_SCAN_INTERVAL_MS", "50");
        v.push(("NOTIFICATION_TENANT_RATE_PER_SEC".into(), "4".into()));
        v.push(("NOTIFICATION_TENANT_BURST".into(), "4".into()));
    })
    .await;
    let started = Instant::now();
    for i in 0..8 {
        h.publish(&ticket_created(
            &new_id(),
            &format!("STM-0007{i:02}"),
            Priority::P3,
        ))
        .await;
    }
    let done = h.finished(8, 30).await;
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "8 messages at 4/s after a burst of 4"
    );
    assert!(
        done.iter()
            .all(|d| d.outcome == DeliveryStatus::Delivered as i32 && d.attempt_count == 1)
    );
    assert_eq!(h.smtp.messages().len(), 8);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_endpoint_ends_its_pending_deliveries_with_the_reason() {
    use wardline_proto::notification::{
        CreateWebhookEndpointRequest, DeleteWebhookEndpointRequest, ErrorClass, GetDeliveryRequest,
        ListWebhookEndpointsRequest,
    };
    // Retries a minute apart: the failed delivery waits for its next attempt.
    let h = spawn_with(|v| {
        set(v, "NOTIFICATION_RETRY_BASE_MS", "60000");
        set(v, "NOTIFICATION_RETRY_MAX_MS", "60000");
    })
    .await;
    let receiver = wardline_testkit::HttpSink::start().await;
    receiver.set_default(503);
    let mut hooks = h.webhooks();
    let e = hooks
        .create_webhook_endpoint(CreateWebhookEndpointRequest {
            request_id: "insecure".into(),
            url: "ftp://example.org/hook".into(),
            event_kinds: vec![EventKind::TicketReceived as i32],
        })
        .await
        .unwrap_err();
    assert!(e.message().starts_with("url:"), "{}", e.message());
    let endpoint = hooks
        .create_webhook_endpoint(CreateWebhookEndpointRequest {
            request_id: "hook".into(),
            url: receiver.url("/hook"),
            event_kinds: vec![EventKind::TicketReceived as i32],
        })
        .await
        .unwrap()
        .into_inner()
        .endpoint
        .unwrap();
    h.publish(&ticket_created(&new_id(), "STM-000800", Priority::P3))
        .await;
    let waiting = wardline_testkit::eventually(15, "a scheduled retry", || {
        let mut c = h.deliveries();
        async move {
            c.list_deliveries(ListDeliveriesRequest {
                states: vec![DeliveryState::RetryScheduled as i32],
                ..Default::default()
            })
            .await
            .ok()?
            .into_inner()
            .deliveries
            .into_iter()
            .next()
        }
    })
    .await;
    let deleted = hooks
        .delete_webhook_endpoint(DeleteWebhookEndpointRequest {
            request_id: "delete".into(),
            endpoint_id: endpoint.endpoint_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.cancelled_deliveries, 1);
    let done = h
        .deliveries()
        .get_delivery(GetDeliveryRequest {
            delivery_id: waiting.delivery_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.outcome, DeliveryStatus::Failed as i32);
    assert_eq!(
        done.attempts.last().unwrap().error_class,
        ErrorClass::EndpointDeleted as i32
    );
    assert!(
        hooks
            .list_webhook_endpoints(ListWebhookEndpointsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .endpoints
            .is_empty()
    );
    h.stop().await;
}
