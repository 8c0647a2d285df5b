//! Notification against a real PostgreSQL, a private nats-server, and real
//! local SMTP and HTTP receivers: who hears what, signed webhooks, retries,
//! dead letters, de-duplication.

mod common;

use std::time::Duration;

use common::*;
use wardline_notification::domain::signature;
use wardline_proto::common::Priority;
use wardline_proto::events::DeliveryStatus;
use wardline_proto::events::event_envelope::Payload;
use wardline_proto::notification::{
    AttemptOutcome, CreateWebhookEndpointRequest, DeliveryState, ErrorClass, EventKind,
    GetDeliveryRequest, ListDeadLettersRequest, NotificationChannel, RetryDeliveryRequest,
    RotateWebhookSecretRequest,
};
use wardline_testkit::events;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caller_hears_received_and_resolved_by_email_once_each() {
    let h = spawn().await;
    let id = new_id();
    let created = ticket_created(&id, "STM-000042", Priority::P3);
    h.publish(&created).await;
    let resolved = ticket_resolved(&id, "STM-000042", 5);
    h.publish(&resolved).await;
    // The same event again under another message id (a replay, or a
    // re-publish the stream's duplicate window no longer catches): the
    // inbox and the unique delivery key keep it to one message.
    h.publish_as(&created, "replayed-copy").await;

    let done = h.finished(2, 20).await;
    settle().await;
    let mails = h.smtp.messages();
    assert_eq!(mails.len(), 2, "{mails:?}");
    let subjects: Vec<String> = mails
        .iter()
        .map(|m| m.header("Subject").unwrap_or_default())
        .collect();
    assert!(
        subjects.contains(&"[Wardline] We received your request STM-000042".to_owned()),
        "{subjects:?}"
    );
    assert!(
        subjects.contains(&"[Wardline] Ticket STM-000042 was resolved".to_owned()),
        "{subjects:?}"
    );
    for m in &mails {
        assert_eq!(m.to, vec!["riley@stmarys.example.org".to_owned()]);
        assert!(m.data.contains(&format!(
            "https://desk.example.org/t/{TENANT}/tickets/STM-000042"
        )));
        let mid = m.header("Message-ID").expect("a Message-ID");
        assert!(mid.ends_with("@wardline.notification>"), "{mid}");
    }
    assert_eq!(done.len(), 2);
    assert!(
        done.iter()
            .all(|d| d.outcome == DeliveryStatus::Delivered as i32 && d.attempt_count == 1)
    );
    // Nobody asked for SMS: the caller's default is email only.
    assert!(h.sms.received().is_empty());
    // Each final outcome is published.
    let outcomes =
        events::wait_for(&h.nats, "wardline.events.stmarys.delivery.outcome", 2, 10).await;
    assert_eq!(outcomes.len(), 2);
    for o in &outcomes {
        let Some(Payload::DeliveryOutcome(p)) = &o.envelope.payload else {
            panic!("outcome")
        };
        assert_eq!(p.status, DeliveryStatus::Delivered as i32);
        assert_eq!(p.channel, "email");
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_p1_escalation_pages_on_call_and_tells_supervisors_a_p3_pages_nobody() {
    let h = spawn().await;
    h.publish(&analyst("oc.olga", 1, false, true)).await;
    h.publish(&analyst("sup.sam", 1, true, false)).await;
    h.publish(&analyst("an.ruiz", 1, false, false)).await;
    // The roster is known before the calls come (as on a real desk): the
    // consumer applies different aggregates in parallel, so an escalation
    // published right behind a roster change may be handled before it.
    let pool = h.db.pool().await;
    wardline_testkit::eventually(20, "the roster in the directory", || {
        let pool = pool.clone();
        async move {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM analysts")
                .fetch_one(&pool)
                .await
                .ok()?;
            (n == 3).then_some(())
        }
    })
    .await;
    let p1 = new_id();
    h.publish(&ticket_created(&p1, "STM-000001", Priority::P1))
        .await;
    h.publish(&escalated(&p1, "STM-000001", Priority::P1, 2))
        .await;
    let p3 = new_id();
    h.publish(&ticket_created(&p3, "STM-000002", Priority::P3))
        .await;
    h.publish(&escalated(&p3, "STM-000002", Priority::P3, 2))
        .await;

    // received x2 (caller), escalation P1: pager + supervisor email,
    // escalation P3: supervisor email.
    h.finished(5, 20).await;
    settle().await;
    let pages = h.pager.received();
    assert_eq!(pages.len(), 1, "only the P1 pages");
    let page: serde_json::Value = serde_json::from_slice(&pages[0].body).unwrap();
    assert_eq!(page["routing_key"], "pager-oc.olga");
    assert_eq!(page["event_action"], "trigger");
    assert!(
        page["payload"]["summary"]
            .as_str()
            .unwrap()
            .contains("STM-000001")
    );
    assert_eq!(
        pages[0].header("authorization"),
        Some("Bearer pager-test-token")
    );
    assert_eq!(
        page["dedup_key"].as_str(),
        pages[0].header("idempotency-key")
    );
    let sup: Vec<_> = h
        .smtp
        .messages()
        .into_iter()
        .filter(|m| m.to == vec!["sup.sam@desk.example.org".to_owned()])
        .collect();
    assert_eq!(sup.len(), 2, "the supervisor hears both escalations");
    assert!(sup.iter().any(|m| {
        m.header("Subject")
            .unwrap()
            .contains("Escalation: P1 ticket STM-000001 (SUPERVISOR)")
    }));
    // The plain analyst is not told about escalations.
    assert!(
        h.smtp
            .messages()
            .iter()
            .all(|m| m.to != vec!["an.ruiz@desk.example.org".to_owned()])
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_assigned_analyst_hears_it_and_an_early_assignment_waits_for_the_directory() {
    let h = spawn().await;
    let id = new_id();
    h.publish(&ticket_created(&id, "STM-000010", Priority::P2))
        .await;
    // The assignment arrives before routing's directory event: retried.
    h.publish(&ticket_assigned(&id, "STM-000010", "an.late", 1))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    h.publish(&analyst("an.late", 1, false, false)).await;
    h.finished(3, 20).await;
    settle().await;
    let to_analyst: Vec<_> = h
        .smtp
        .messages()
        .into_iter()
        .filter(|m| m.to == vec!["an.late@desk.example.org".to_owned()])
        .collect();
    assert_eq!(to_analyst.len(), 1);
    assert_eq!(
        to_analyst[0].header("Subject").unwrap(),
        "[Wardline] Ticket STM-000010 was assigned to you"
    );
    // The caller also hears about the assignment (received + assigned),
    // in the caller's words.
    let to_caller: Vec<String> = h
        .smtp
        .messages()
        .iter()
        .filter(|m| m.to == vec!["riley@stmarys.example.org".to_owned()])
        .filter_map(|m| m.header("Subject"))
        .collect();
    assert_eq!(to_caller.len(), 2);
    assert!(
        to_caller.contains(&"[Wardline] Ticket STM-000010 was assigned to an analyst".to_owned()),
        "{to_caller:?}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_arrives_signed_and_both_secrets_sign_during_rotation() {
    let h = spawn().await;
    let receiver = wardline_testkit::HttpSink::start().await;
    let hook = || CreateWebhookEndpointRequest {
        request_id: "hook-1".into(),
        url: receiver.url("/wardline"),
        event_kinds: vec![
            EventKind::TicketReceived as i32,
            EventKind::TicketResolved as i32,
        ],
    };
    let created = h
        .webhooks()
        .create_webhook_endpoint(hook())
        .await
        .unwrap()
        .into_inner();
    let secret = created.secret.clone();
    let endpoint = created.endpoint.unwrap();
    // At rest the secret is sealed: nowhere in the endpoint's row, nor in the
    // stored idempotency response (a retry gets the endpoint, not the secret).
    let pool = h.db.pool().await;
    let row: String = sqlx::query_scalar(
        "SELECT row_to_json(w)::text FROM webhook_endpoints w WHERE endpoint_id = $1::uuid",
    )
    .bind(&endpoint.endpoint_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(!row.contains(&secret), "the secret is sealed at rest");
    let hex: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
    assert!(!row.contains(&hex), "not even as bytea hex");
    let stored: Vec<Vec<u8>> = sqlx::query_scalar("SELECT response FROM idempotency_keys")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert!(
        stored
            .iter()
            .all(|r| !r.windows(secret.len()).any(|w| w == secret.as_bytes())),
        "no idempotency record holds the secret"
    );
    let replay = h
        .webhooks()
        .create_webhook_endpoint(hook())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(replay.endpoint.unwrap().endpoint_id, endpoint.endpoint_id);
    assert!(replay.secret.is_empty(), "shown once");
    let id = new_id();
    h.publish(&ticket_created(&id, "STM-000077", Priority::P3))
        .await;
    wardline_testkit::eventually(15, "the webhook", || async {
        (!receiver.received().is_empty()).then_some(())
    })
    .await;
    let got = &receiver.received()[0];
    assert_eq!(got.method, "POST");
    assert_eq!(got.path, "/wardline");
    assert_eq!(got.header("content-type"), Some("application/json"));
    assert_eq!(got.header("wardline-event-kind"), Some("ticket_received"));
    let sig = got.header("wardline-signature").expect("signed");
    let now = chrono::Utc::now().timestamp();
    signature::verify(&secret, sig, &got.body, now)
        .expect("the signature verifies with the secret");
    assert!(signature::verify("not-the-secret", sig, &got.body, now).is_err());
    let body: serde_json::Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(body["ticket"]["number"], "STM-000077");
    assert_eq!(body["ticket"]["priority"], "P3");
    assert_eq!(body["event"]["kind"], "ticket_received");
    assert_eq!(body["tenant"]["id"], TENANT);
    let delivery_id = got.header("wardline-delivery-id").unwrap().to_owned();

    // Rotation: the next request carries both signatures, newest first.
    let rotated = h
        .webhooks()
        .rotate_webhook_secret(RotateWebhookSecretRequest {
            request_id: "rotate-1".into(),
            endpoint_id: endpoint.endpoint_id.clone(),
            overlap_seconds: 600,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        rotated
            .endpoint
            .unwrap()
            .previous_secret_expires_at
            .is_some()
    );
    h.publish(&ticket_resolved(&id, "STM-000077", 4)).await;
    wardline_testkit::eventually(15, "the second webhook", || async {
        (receiver.received().len() >= 2).then_some(())
    })
    .await;
    let second = &receiver.received()[1];
    let sig = second.header("wardline-signature").unwrap();
    assert_eq!(sig.matches("v1=").count(), 2, "{sig}");
    signature::verify(&rotated.secret, sig, &second.body, now).expect("new secret");
    signature::verify(&secret, sig, &second.body, now).expect("old secret still valid");
    assert_ne!(second.header("wardline-delivery-id").unwrap(), delivery_id);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_fails_twice_then_succeeds_gets_the_event_exactly_once() {
    let h = spawn().await;
    let receiver = wardline_testkit::HttpSink::start().await;
    receiver.respond_with(&[503, 503]);
    h.webhooks()
        .create_webhook_endpoint(CreateWebhookEndpointRequest {
            request_id: "hook-1".into(),
            url: receiver.url("/hook"),
            event_kinds: vec![EventKind::TicketReceived as i32],
        })
        .await
        .unwrap();
    // SMTP refuses twice with a transient 451 as well.
    h.smtp.refuse_next(&[451, 451]);
    h.publish(&ticket_created(&new_id(), "STM-000100", Priority::P3))
        .await;
    let done = h.finished(2, 20).await;
    settle().await;
    let got = receiver.received();
    assert_eq!(
        got.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![503, 503, 200]
    );
    let ids: Vec<_> = got
        .iter()
        .map(|r| r.header("wardline-delivery-id").unwrap().to_owned())
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] == w[1]),
        "one delivery, retried: {ids:?}"
    );
    assert_eq!(
        got.iter().filter(|r| r.status == 200).count(),
        1,
        "accepted exactly once"
    );
    assert_eq!(h.smtp.messages().len(), 1, "one email accepted");
    assert_eq!(h.smtp.refused(), 2);
    for d in &done {
        assert_eq!(d.outcome, DeliveryStatus::Delivered as i32);
        assert_eq!(d.attempt_count, 3);
        let full = h
            .deliveries()
            .get_delivery(GetDeliveryRequest {
                delivery_id: d.delivery_id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        let outcomes: Vec<i32> = full.attempts.iter().map(|a| a.outcome).collect();
        assert_eq!(
            outcomes,
            vec![
                AttemptOutcome::RetryableFailure as i32,
                AttemptOutcome::RetryableFailure as i32,
                AttemptOutcome::Succeeded as i32
            ]
        );
        let expected_code = if d.channel == NotificationChannel::Webhook as i32 {
            503
        } else {
            451
        };
        assert_eq!(full.attempts[0].status_code, expected_code);
        assert_eq!(
            full.attempts[0].error_class,
            ErrorClass::RemoteTransient as i32
        );
        assert!(full.attempts[0].next_retry_at.is_some());
        assert!(full.attempts[2].next_retry_at.is_none());
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_always_fails_ends_dead_lettered_with_every_attempt_and_can_be_retried() {
    let h = spawn().await;
    let receiver = wardline_testkit::HttpSink::start().await;
    receiver.set_default(500);
    let rejecting = wardline_testkit::HttpSink::start().await;
    rejecting.set_default(400);
    for (i, r) in [&receiver, &rejecting].iter().enumerate() {
        h.webhooks()
            .create_webhook_endpoint(CreateWebhookEndpointRequest {
                request_id: format!("hook-{i}"),
                url: r.url("/hook"),
                event_kinds: vec![EventKind::TicketReceived as i32],
            })
            .await
            .unwrap();
    }
    h.publish(&ticket_created(&new_id(), "STM-000200", Priority::P3))
        .await;
    h.finished(3, 20).await;
    settle().await;
    // MAX_ATTEMPTS=4: four attempts, then dead-lettered.
    assert_eq!(receiver.received().len(), 4);
    // A permanent failure is not retried.
    assert_eq!(rejecting.received().len(), 1);
    let dead = h
        .deliveries()
        .list_dead_letters(ListDeadLettersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .deliveries;
    assert_eq!(dead.len(), 1);
    let d = &dead[0];
    assert_eq!(d.outcome, DeliveryStatus::DeadLettered as i32);
    assert_eq!(d.state, DeliveryState::Finished as i32);
    assert_eq!(d.attempts.len(), 4, "every attempt recorded");
    assert!(
        d.attempts
            .iter()
            .all(|a| a.status_code == 500 && a.outcome == AttemptOutcome::RetryableFailure as i32)
    );
    assert!(d.attempts[3].next_retry_at.is_none());
    let failed: Vec<_> = h
        .finished(3, 5)
        .await
        .into_iter()
        .filter(|x| x.outcome == DeliveryStatus::Failed as i32)
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].attempt_count, 1);

    // The receiver is fixed; an operator retries the dead letter.
    receiver.set_default(200);
    let retried = h
        .deliveries()
        .retry_delivery(RetryDeliveryRequest {
            request_id: "retry-1".into(),
            delivery_id: d.delivery_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried.state, DeliveryState::Pending as i32);
    wardline_testkit::eventually(15, "the retried delivery", || async {
        let got = h
            .deliveries()
            .get_delivery(GetDeliveryRequest {
                delivery_id: d.delivery_id.clone(),
            })
            .await
            .ok()?
            .into_inner();
        (got.outcome == DeliveryStatus::Delivered as i32).then_some(got)
    })
    .await;
    assert_eq!(receiver.received().len(), 5, "attempt numbers continue");
    // Only a failed delivery can be retried.
    let e = h
        .deliveries()
        .retry_delivery(RetryDeliveryRequest {
            request_id: "retry-2".into(),
            delivery_id: d.delivery_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    h.stop().await;
}

/// A backlog of retries (receivers that were down for hours, a load test's
/// dead endpoints) must never delay a new notification: first attempts are
/// claimed before due retries. With the tenant capped at 2 messages a
/// second, 300 due retries ahead of it in time would hold a fresh email
/// back for minutes if the sender went by due time alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_notification_goes_out_before_a_backlog_of_retries() {
    let h = spawn_with(|vars| {
        vars.push(("NOTIFICATION_TENANT_RATE_PER_SEC".into(), "2".into()));
        vars.push(("NOTIFICATION_TENANT_BURST".into(), "2".into()));
    })
    .await;
    let first = new_id();
    h.publish(&ticket_created(&first, "STM-000001", Priority::P3))
        .await;
    h.finished(1, 20).await;

    // 300 copies of that delivery, each on its third attempt and due a
    // minute ago: older, by due time, than anything published from now on.
    let pool = h.db.pool().await;
    sqlx::query(
        "INSERT INTO deliveries
         SELECT (jsonb_populate_record(d, jsonb_build_object(
                   'delivery_id', gen_random_uuid(), 'source_event_id', gen_random_uuid(),
                   'state', 2, 'outcome', 0, 'attempt_count', 2, 'sending_since', NULL,
                   'finished_at', NULL, 'next_attempt_at', now() - interval '1 minute'))).*
           FROM deliveries d, generate_series(1, 300)",
    )
    .execute(&pool)
    .await
    .unwrap();

    let fresh = new_id();
    h.publish(&ticket_created(&fresh, "STM-000002", Priority::P3))
        .await;
    wardline_testkit::eventually(15, "the fresh email", || async {
        h.smtp
            .messages()
            .iter()
            .any(|m| {
                m.header("Subject")
                    .is_some_and(|s| s.contains("STM-000002"))
            })
            .then_some(())
    })
    .await;
    let retried: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM deliveries WHERE number = 'STM-000001' AND attempt_count > 2",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        retried < 150,
        "the fresh email waited behind {retried} retries"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_covering_every_tenant_hears_a_tenants_escalation() {
    let h = spawn().await;
    // Routing announces an analyst who covers every tenant under '_all';
    // notification keeps them as a '_vendor' recipient, which every
    // tenant's events reach (row-level security lets them, and only them,
    // across).
    let mut vendor = analyst("sup.vera", 1, true, false);
    vendor.tenant_id = "_all".into();
    if let Some(Payload::AnalystUpserted(p)) = &mut vendor.payload {
        p.analyst.as_mut().unwrap().tenants = vec!["*".into()];
    }
    h.publish(&vendor).await;
    let pool = h.db.pool().await;
    wardline_testkit::eventually(20, "the vendor supervisor as a recipient", || {
        let pool = pool.clone();
        async move {
            let n: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM recipients WHERE tenant_id = '_vendor' AND subject_id = 'sup.vera'",
            )
            .fetch_one(&pool)
            .await
            .ok()?;
            (n >= 1).then_some(())
        }
    })
    .await;
    let id = new_id();
    h.publish(&ticket_created(&id, "STM-000077", Priority::P2))
        .await;
    h.publish(&escalated(&id, "STM-000077", Priority::P2, 2))
        .await;
    // received (caller), escalation (the vendor supervisor).
    h.finished(2, 20).await;
    settle().await;
    let to_vera = h
        .smtp
        .messages()
        .into_iter()
        .filter(|m| m.to == vec!["sup.vera@desk.example.org".to_owned()])
        .count();
    assert_eq!(
        to_vera, 1,
        "the vendor supervisor hears the escalation once"
    );
}
