//! `wardctl recipient | webhook | delivery`: notification's view of
//! `--tenant`: who hears what on which channel, the tenant's webhook
//! endpoints, and every delivery with its attempts. Tickets may be named by
//! number; intake turns a number into the id notification knows.

use anyhow::Result;
use tonic::{Code, Status};
use wardline_proto::notification::{
    ChannelAddress, CreateWebhookEndpointRequest, DeleteWebhookEndpointRequest, GetDeliveryRequest,
    ListDeadLettersRequest, ListDeliveriesRequest, ListRecipientsRequest,
    ListWebhookEndpointsRequest, NotificationChannel, Preferences, Recipient, RetryDeliveryRequest,
    RotateWebhookSecretRequest, SetPreferencesRequest, UpsertRecipientRequest,
};

use super::routing::ticket_id;
use super::{Context, print_json, show_list, show_one};
use crate::cli::{
    DeliveryCommand, ListDeliveriesArgs, PreferenceArgs, RecipientCommand, UpsertRecipientArgs,
    WebhookCommand,
};
use crate::grpc::Session;
use crate::render::notification as render;

/// ABORTED says the version moved; anything else passes through.
fn versioned(s: Status, what: &str) -> anyhow::Error {
    if s.code() == Code::Aborted {
        anyhow::Error::new(s).context(format!(
            "the {what} changed since the version you gave (see its current version, then retry)"
        ))
    } else {
        s.into()
    }
}

/// Preferences from the flags (None when none were given).
pub fn preferences(args: &PreferenceArgs) -> Option<Preferences> {
    (!args.is_empty()).then(|| Preferences {
        subscriptions: args.subscriptions.iter().map(|s| s.wire()).collect(),
        quiet_hours: args.quiet_hours.as_ref().map(|q| q.wire()),
    })
}

/// The recipient `recipient upsert` sends.
pub fn recipient_from_args(args: &UpsertRecipientArgs) -> Recipient {
    let addresses = [
        (NotificationChannel::Email, &args.email),
        (NotificationChannel::Sms, &args.sms),
        (NotificationChannel::Pager, &args.pager),
    ]
    .into_iter()
    .filter_map(|(channel, a)| {
        a.as_ref().map(|a| ChannelAddress {
            channel: channel as i32,
            address: a.clone(),
        })
    })
    .collect();
    Recipient {
        recipient_id: args.id.clone().unwrap_or_default(),
        kind: args.kind as i32,
        subject_id: args.subject.clone().unwrap_or_default(),
        name: args.name.clone(),
        addresses,
        preferences: preferences(&args.prefs),
        ..Default::default()
    }
}

/// Up to `limit` of the session's recipients matching `req`, by id.
pub async fn list_recipients(
    session: &Session,
    req: ListRecipientsRequest,
    limit: usize,
) -> Result<Vec<Recipient>> {
    paged!(
        limit,
        session.recipients(),
        list_recipients,
        req,
        recipients
    )
}

/// `wardctl recipient upsert|list|preferences`.
pub async fn recipient(ctx: &Context, cmd: RecipientCommand) -> Result<()> {
    let tenant = ctx.tenant_for("the tenant whose recipients to use")?;
    let session = ctx.notification_session(tenant).await?;
    let r = match cmd {
        RecipientCommand::Upsert(args) => session
            .recipients()
            .upsert_recipient(UpsertRecipientRequest {
                request_id: ctx.request_id(),
                recipient: Some(recipient_from_args(&args)),
                expected_version: args.expected_version.unwrap_or(0),
            })
            .await
            .map_err(|s| versioned(s, "recipient"))?
            .into_inner(),
        RecipientCommand::Preferences {
            id,
            prefs,
            expected_version,
        } => session
            .recipients()
            .set_preferences(SetPreferencesRequest {
                request_id: ctx.request_id(),
                recipient_id: id,
                preferences: Some(preferences(&prefs).unwrap_or_default()),
                expected_version: expected_version.unwrap_or(0),
            })
            .await
            .map_err(|s| versioned(s, "recipient"))?
            .into_inner(),
        RecipientCommand::List(args) => {
            let req = ListRecipientsRequest {
                kinds: args.kinds.iter().map(|k| *k as i32).collect(),
                subject_id: args.subject.clone().unwrap_or_default(),
                ..Default::default()
            };
            let list = list_recipients(&session, req, args.limit as usize).await?;
            show_list(
                ctx,
                tenant,
                &list,
                |l, _| render::recipient_table(l),
                "no recipients match (callers and analysts appear once intake's and routing's events arrive)",
            )
            .await;
            return Ok(());
        }
    };
    show_one(ctx, tenant, &r, render::recipient_details).await;
    Ok(())
}

/// `wardctl webhook create|rotate|list|delete`.
pub async fn webhook(ctx: &Context, cmd: WebhookCommand) -> Result<()> {
    let tenant = ctx.tenant_for("the tenant whose webhooks to use")?;
    let session = ctx.notification_session(tenant).await?;
    let (endpoint, secret) = match cmd {
        WebhookCommand::Create { url, events } => {
            let r = session
                .webhooks()
                .create_webhook_endpoint(CreateWebhookEndpointRequest {
                    request_id: ctx.request_id(),
                    url,
                    event_kinds: events.iter().map(|e| *e as i32).collect(),
                })
                .await
                .map_err(|s| {
                    let invalid = s.code() == Code::InvalidArgument;
                    let http = invalid && s.message().contains("http");
                    let internal = invalid && s.message().contains("public address");
                    let e = anyhow::Error::new(s);
                    if http {
                        e.context("notification takes https:// URLs only, unless started with NOTIFICATION_WEBHOOK_ALLOW_HTTP=true")
                    } else if internal {
                        e.context("notification sends only to public addresses, unless the host is in its NOTIFICATION_EGRESS_ALLOW_HOSTS")
                    } else {
                        e
                    }
                })?
                .into_inner();
            if ctx.json {
                print_json(&r);
                return Ok(());
            }
            (r.endpoint.unwrap_or_default(), r.secret)
        }
        WebhookCommand::Rotate { id, overlap_hours } => {
            let r = session
                .webhooks()
                .rotate_webhook_secret(RotateWebhookSecretRequest {
                    request_id: ctx.request_id(),
                    endpoint_id: id,
                    overlap_seconds: overlap_hours * 3600,
                })
                .await?
                .into_inner();
            if ctx.json {
                print_json(&r);
                return Ok(());
            }
            (r.endpoint.unwrap_or_default(), r.secret)
        }
        WebhookCommand::List { limit } => {
            let req = ListWebhookEndpointsRequest::default();
            let list = paged!(
                limit as usize,
                session.webhooks(),
                list_webhook_endpoints,
                req,
                endpoints
            )?;
            show_list(
                ctx,
                tenant,
                &list,
                render::webhook_table,
                "no webhook endpoints (add one with: wardctl webhook create --url https://... --event ticket-assigned)",
            )
            .await;
            return Ok(());
        }
        WebhookCommand::Delete { id } => {
            let r = session
                .webhooks()
                .delete_webhook_endpoint(DeleteWebhookEndpointRequest {
                    request_id: ctx.request_id(),
                    endpoint_id: id,
                })
                .await?
                .into_inner();
            if ctx.json {
                print_json(&r);
            } else {
                println!(
                    "deleted {}; {} pending deliveries cancelled",
                    r.endpoint_id, r.cancelled_deliveries
                );
            }
            return Ok(());
        }
    };
    let zone = super::routing::tenant_zone(ctx, tenant).await;
    print!(
        "{}",
        render::webhook_details(&endpoint, Some(&secret), zone)
    );
    Ok(())
}

/// The first request of `delivery list` (the ticket id resolved already).
pub fn deliveries_request(args: &ListDeliveriesArgs, ticket_id: String) -> ListDeliveriesRequest {
    ListDeliveriesRequest {
        event_kinds: args.events.iter().map(|k| *k as i32).collect(),
        channels: args.channels.iter().map(|c| *c as i32).collect(),
        states: args.states.iter().map(|s| *s as i32).collect(),
        outcomes: args.outcomes.iter().map(|o| *o as i32).collect(),
        recipient_id: args.recipient.clone().unwrap_or_default(),
        endpoint_id: args.endpoint.clone().unwrap_or_default(),
        ticket_id,
        ..Default::default()
    }
}

/// Up to `limit` of the session's deliveries matching `req`, newest first.
pub async fn list_deliveries(
    session: &Session,
    req: ListDeliveriesRequest,
    limit: usize,
) -> Result<Vec<wardline_proto::notification::Delivery>> {
    paged!(
        limit,
        session.deliveries(),
        list_deliveries,
        req,
        deliveries
    )
}

/// `wardctl delivery list|get|retry|dead-letters`.
pub async fn delivery(ctx: &Context, cmd: DeliveryCommand) -> Result<()> {
    let tenant = ctx.tenant_for("the tenant whose deliveries to show")?;
    let d = match cmd {
        DeliveryCommand::List(args) => {
            let ticket = match &args.ticket {
                Some(key) => ticket_id(ctx, tenant, key).await?,
                None => String::new(),
            };
            let session = ctx.notification_session(tenant).await?;
            let req = deliveries_request(&args, ticket);
            let list = list_deliveries(&session, req, args.limit as usize).await?;
            show_list(
                ctx,
                tenant,
                &list,
                render::delivery_table,
                "no deliveries match",
            )
            .await;
            return Ok(());
        }
        DeliveryCommand::DeadLetters { channels, limit } => {
            let session = ctx.notification_session(tenant).await?;
            let req = ListDeadLettersRequest {
                channels: channels.iter().map(|c| *c as i32).collect(),
                ..Default::default()
            };
            let list = paged!(limit as usize, session.deliveries(), list_dead_letters, req, deliveries)?;
            show_list(
                ctx,
                tenant,
                &list,
                render::delivery_table,
                "no dead-lettered deliveries",
            )
            .await;
            if !ctx.json && !list.is_empty() {
                println!(
                    "\nwhy each failed: wardctl delivery get ID; send again: wardctl delivery retry ID"
                );
            }
            return Ok(());
        }
        DeliveryCommand::Get { id } => ctx
            .notification_session(tenant)
            .await?
            .deliveries()
            .get_delivery(GetDeliveryRequest { delivery_id: id })
            .await?
            .into_inner(),
        DeliveryCommand::Retry { id } => ctx
            .notification_session(tenant)
            .await?
            .deliveries()
            .retry_delivery(RetryDeliveryRequest {
                request_id: ctx.request_id(),
                delivery_id: id.clone(),
            })
            .await
            .map_err(|s| {
                let refused = s.code() == Code::FailedPrecondition;
                let e = anyhow::Error::new(s);
                if refused {
                    e.context(format!(
                        "only a failed or dead-lettered delivery is retried (see wardctl delivery get {id})"
                    ))
                } else {
                    e
                }
            })?
            .into_inner(),
    };
    show_one(ctx, tenant, &d, render::delivery_details).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;
    use wardline_proto::notification::RecipientKind;

    fn parse(args: &[&str]) -> Command {
        Cli::try_parse_from(std::iter::once("wardctl").chain(args.iter().copied()))
            .unwrap()
            .command
    }

    #[test]
    fn upsert_sends_one_address_per_channel_and_keeps_preferences_unless_given() {
        let Command::Recipient(RecipientCommand::Upsert(a)) = parse(&[
            "recipient",
            "upsert",
            "--kind",
            "on-call",
            "--subject",
            "rn.okonkwo",
            "--name",
            "Grace",
            "--sms",
            "+13125550111",
            "--pager",
            "pd-key",
        ]) else {
            panic!("not upsert")
        };
        let r = recipient_from_args(&a);
        assert_eq!(r.kind, RecipientKind::OnCall as i32);
        assert_eq!(
            r.addresses.iter().map(render::address).collect::<Vec<_>>(),
            vec!["sms:+13125550111", "pager:pd-key"]
        );
        assert_eq!(
            r.preferences, None,
            "no flags: keep the current preferences"
        );

        let Command::Recipient(RecipientCommand::Preferences { prefs, .. }) = parse(&[
            "recipient",
            "preferences",
            "r-1",
            "--subscribe",
            "ticket-received=",
        ]) else {
            panic!("not preferences")
        };
        let p = preferences(&prefs).unwrap();
        assert!(p.subscriptions[0].channels.is_empty(), "muted");
    }

    #[test]
    fn delivery_filters_reach_the_request() {
        let Command::Delivery(DeliveryCommand::List(a)) = parse(&[
            "delivery",
            "list",
            "--event",
            "ticket-assigned",
            "--channel",
            "email",
            "--state",
            "pending,deferred",
            "--recipient",
            "r-1",
        ]) else {
            panic!("not delivery list")
        };
        let req = deliveries_request(&a, "t-1".into());
        assert_eq!(req.ticket_id, "t-1");
        assert_eq!(req.states.len(), 2);
        assert_eq!(req.channels, vec![NotificationChannel::Email as i32]);
        assert_eq!(req.recipient_id, "r-1");
        assert!(req.outcomes.is_empty() && req.endpoint_id.is_empty());
    }

    #[tokio::test]
    async fn pages_are_followed_up_to_the_limit() {
        let pages = std::sync::Mutex::new(Vec::new());
        let got = crate::commands::collect_pages(5, |size, token| {
            pages.lock().unwrap().push((size, token.clone()));
            async move {
                let start: u32 = token.parse().unwrap_or(0);
                let items: Vec<u32> = (start..start + 3).collect();
                Ok((items, (start + 3).to_string()))
            }
        })
        .await
        .unwrap();
        assert_eq!(got, vec![0, 1, 2, 3, 4]);
        assert_eq!(
            *pages.lock().unwrap(),
            vec![(5, String::new()), (2, "3".to_owned())]
        );
        let err = crate::commands::collect_pages::<u32, _, _>(5, |_, _| async {
            Err(Status::unavailable("down"))
        })
        .await
        .unwrap_err();
        assert!(crate::error_text(&err).contains("UNAVAILABLE"));
    }
}
