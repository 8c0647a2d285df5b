//! RecipientService: who is notified, at which addresses, with which
//! preferences. Recipients created from events (callers, analysts) can be
//! edited here; once an admin sets addresses, events no longer change them.

use prost::Message;
use tonic::{Request, Response, Status};
use uuid::Uuid;
use wardline_kit::audit;
use wardline_kit::auth::{Caller, Role};
use wardline_kit::events::timestamp;
use wardline_kit::idempotency::{self, Claim};
use wardline_kit::validate;
use wardline_proto::notification::recipient_service_server::RecipientService;
use wardline_proto::notification::{
    ChannelAddress, ListRecipientsRequest, ListRecipientsResponse, Preferences, Recipient,
    SetPreferencesRequest, Source, UpsertRecipientRequest,
};

use super::{
    ADMINS, Api, channel, db, decode_replay, event_kind, invalid, page_size, parse_uuid,
    require_request_id, tenant_of,
};
use crate::domain::audience::parse_hhmm;
use crate::domain::{NotificationChannel, RecipientKind};
use crate::store::VENDOR_TENANT;
use crate::store::recipients::{self, RecipientRow};

fn not_found(id: &str) -> Status {
    Status::not_found(format!("recipient {id} not found"))
}

pub(crate) fn to_proto(r: &RecipientRow) -> Recipient {
    let mut addresses = Vec::new();
    for (c, a) in [
        (NotificationChannel::Email, &r.email),
        (NotificationChannel::Sms, &r.phone),
        (NotificationChannel::Pager, &r.pager),
    ] {
        if !a.is_empty() {
            addresses.push(ChannelAddress {
                channel: c as i32,
                address: a.clone(),
            });
        }
    }
    Recipient {
        recipient_id: r.recipient_id.to_string(),
        tenant_id: r.tenant_id.clone(),
        kind: i32::from(r.kind),
        subject_id: r.subject_id.clone(),
        name: r.name.clone(),
        addresses,
        preferences: Some(r.preferences()),
        preferences_source: if r.preferences.is_some() {
            Source::Tenant as i32
        } else {
            Source::Default as i32
        },
        version: r.version as u64,
        created_at: Some(timestamp(r.created_at)),
        updated_at: Some(timestamp(r.updated_at)),
    }
}

/// A subject id: 1-128 of `[A-Za-z0-9._@-]` (caller ids, analyst ids, rota keys).
fn is_subject(s: &str) -> bool {
    (1..=crate::limits::SUBJECT_ID).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
}

/// Addresses per channel (email, phone, pager); errors name `field[i]`.
fn addresses(list: &[ChannelAddress], field: &str) -> Result<[String; 3], Status> {
    let mut out: [String; 3] = Default::default();
    for (i, a) in list.iter().enumerate() {
        let f = format!("{field}[{i}]");
        let c = channel(a.channel, &format!("{f}.channel"))?;
        let (slot, ok) = match c {
            NotificationChannel::Email => (0, validate::is_email(&a.address)),
            NotificationChannel::Sms => (1, validate::is_e164(&a.address)),
            NotificationChannel::Pager => (
                2,
                validate::is_display_text(&a.address, crate::limits::PAGER),
            ),
            _ => {
                return Err(invalid(format!(
                    "{f}.channel: EMAIL, SMS or PAGER (webhooks are WebhookService endpoints)"
                )));
            }
        };
        if !ok {
            return Err(invalid(format!(
                "{f}.address: not a valid {} address",
                crate::domain::channel_label(c)
            )));
        }
        if !out[slot].is_empty() {
            return Err(invalid(format!(
                "{f}.channel: at most one address per channel"
            )));
        }
        out[slot] = a.address.clone();
    }
    Ok(out)
}

/// Checks preferences against the addresses a recipient has.
fn check_preferences(p: &Preferences, addrs: &[String; 3], field: &str) -> Result<(), Status> {
    let mut seen = Vec::new();
    for (i, s) in p.subscriptions.iter().enumerate() {
        let f = format!("{field}.subscriptions[{i}]");
        let kind = event_kind(s.event_kind, &format!("{f}.event_kind"))?;
        if seen.contains(&kind) {
            return Err(invalid(format!("{f}.event_kind: duplicate")));
        }
        seen.push(kind);
        wardline_kit::api::at_most(
            &format!("{f}.channels"),
            s.channels.len(),
            crate::limits::SUBSCRIPTION_CHANNELS,
        )?;
        for (j, c) in s.channels.iter().enumerate() {
            let cf = format!("{f}.channels[{j}]");
            let c = channel(*c, &cf)?;
            let has = match c {
                NotificationChannel::Email => !addrs[0].is_empty(),
                NotificationChannel::Sms => !addrs[1].is_empty(),
                NotificationChannel::Pager => !addrs[2].is_empty(),
                _ => return Err(invalid(format!("{cf}: EMAIL, SMS or PAGER"))),
            };
            if !has {
                return Err(invalid(format!(
                    "{cf}: the recipient has no {} address",
                    crate::domain::channel_label(c)
                )));
            }
        }
    }
    if let Some(q) = &p.quiet_hours {
        let f = format!("{field}.quiet_hours");
        if parse_hhmm(&q.start).is_none() {
            return Err(invalid(format!("{f}.start: \"HH:MM\"")));
        }
        if parse_hhmm(&q.end).is_none() {
            return Err(invalid(format!("{f}.end: \"HH:MM\"")));
        }
        if q.time_zone.parse::<chrono_tz::Tz>().is_err() {
            return Err(invalid(format!(
                "{f}.time_zone: an IANA time zone, e.g. America/Chicago"
            )));
        }
    }
    Ok(())
}

fn check_version(expected: u64, r: &RecipientRow) -> Result<(), Status> {
    if expected != 0 && expected != r.version as u64 {
        return Err(Status::aborted(format!(
            "expected_version: the recipient is at version {}, not {expected}",
            r.version
        )));
    }
    Ok(())
}

async fn lock(
    conn: &mut sqlx::PgConnection,
    tenants: &[&str],
    id: Uuid,
) -> Result<Option<RecipientRow>, Status> {
    recipients::lock(conn, tenants, id).await.map_err(db)
}

async fn get(conn: &mut sqlx::PgConnection, id: Uuid) -> Result<RecipientRow, Status> {
    recipients::get(conn, id).await.map_err(db)
}

#[tonic::async_trait]
impl RecipientService for Api {
    async fn upsert_recipient(
        &self,
        req: Request<UpsertRecipientRequest>,
    ) -> Result<Response<Recipient>, Status> {
        let caller = Caller::from_request(&req)?;
        let tenant = tenant_of(&caller, ADMINS)?;
        let r = req.into_inner();
        require_request_id(&r.request_id)?;
        let given = r
            .recipient
            .as_ref()
            .ok_or_else(|| invalid("recipient: required"))?;
        let kind = match RecipientKind::try_from(given.kind) {
            Ok(RecipientKind::Unspecified) => return Err(invalid("recipient.kind: required")),
            Ok(k) => k,
            Err(_) => {
                return Err(invalid(format!(
                    "recipient.kind: unknown value {}",
                    given.kind
                )));
            }
        };
        if kind == RecipientKind::Custom {
            if !given.subject_id.is_empty() {
                return Err(invalid("recipient.subject_id: must be empty for CUSTOM"));
            }
        } else if !is_subject(&given.subject_id) {
            return Err(invalid(format!(
                "recipient.subject_id: required, 1-{} of [A-Za-z0-9._@-]",
                crate::limits::SUBJECT_ID
            )));
        }
        if !validate::is_display_text(&given.name, crate::limits::NAME) {
            return Err(invalid(format!(
                "recipient.name: 1-{} characters, no control characters",
                crate::limits::NAME
            )));
        }
        let addrs = addresses(&given.addresses, "recipient.addresses")?;
        if let Some(p) = &given.preferences {
            check_preferences(p, &addrs, "recipient.preferences")?;
        }
        let id = if given.recipient_id.is_empty() {
            None
        } else {
            Some(parse_uuid(&given.recipient_id, "recipient.recipient_id")?)
        };
        let hash = idempotency::request_hash("UpsertRecipient", &r);
        let mut tx = self.begin(&tenant).await?;
        if let Claim::Replay(bytes) =
            idempotency::begin(&mut tx, &tenant, &r.request_id, "UpsertRecipient", &hash).await?
        {
            return decode_replay(&bytes);
        }
        let existing = match id {
            Some(id) => {
                let row = lock(&mut tx, &[&tenant], id)
                    .await?
                    .ok_or_else(|| not_found(&id.to_string()))?;
                if row.kind() != kind || row.subject_id != given.subject_id {
                    return Err(invalid(
                        "recipient.kind: kind and subject_id of an existing recipient cannot change",
                    ));
                }
                Some(row)
            }
            None if kind != RecipientKind::Custom => {
                recipients::lock_by_subject(&mut tx, &tenant, kind, &given.subject_id)
                    .await
                    .map_err(db)?
            }
            None => None,
        };
        let prefs = given.preferences.as_ref().map(|p| p.encode_to_vec());
        let id = match &existing {
            Some(row) => {
                check_version(r.expected_version, row)?;
                if prefs.is_none() {
                    check_preferences(&row.preferences(), &addrs, "recipient.addresses")?;
                }
                recipients::update_managed(
                    &mut tx,
                    row.recipient_id,
                    given.name.trim(),
                    &addrs,
                    prefs.as_deref(),
                )
                .await
                .map_err(db)?;
                row.recipient_id
            }
            None => {
                if r.expected_version != 0 {
                    return Err(Status::aborted(
                        "expected_version: the recipient does not exist yet",
                    ));
                }
                let id = Uuid::now_v7();
                recipients::insert_managed(
                    &mut tx,
                    id,
                    &tenant,
                    kind,
                    &given.subject_id,
                    given.name.trim(),
                    &addrs,
                    prefs.as_deref(),
                )
                .await
                .map_err(|e| match &e {
                    sqlx::Error::Database(d) if d.code().as_deref() == Some("23505") => {
                        Status::aborted("concurrent update; retry with the same request_id")
                    }
                    _ => db(e),
                })?;
                id
            }
        };
        audit::record(
            &mut tx,
            &caller,
            &tenant,
            vec![id.to_string()],
            &r.request_id,
        )
        .await
        .map_err(db)?;
        let resp = to_proto(&get(&mut tx, id).await?);
        idempotency::finish(&mut tx, &tenant, &r.request_id, &resp.encode_to_vec())
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        tracing::info!(recipient_id = %id, "recipient upserted");
        Ok(Response::new(resp))
    }

    async fn list_recipients(
        &self,
        req: Request<ListRecipientsRequest>,
    ) -> Result<Response<ListRecipientsResponse>, Status> {
        let caller = Caller::from_request(&req)?;
        let tenant = tenant_of(&caller, ADMINS)?;
        let r = req.into_inner();
        let size = page_size(r.page_size, 100)?;
        super::check_filter("kinds", r.kinds.len())?;
        if !r.subject_id.is_empty() && !is_subject(&r.subject_id) {
            return Err(invalid(format!(
                "subject_id: 1-{} of [A-Za-z0-9._@-]",
                crate::limits::SUBJECT_ID
            )));
        }
        let mut kinds: Vec<i16> = Vec::new();
        for (i, k) in r.kinds.iter().enumerate() {
            match RecipientKind::try_from(*k) {
                Ok(RecipientKind::Unspecified) | Err(_) => {
                    return Err(invalid(format!("kinds[{i}]: unknown value {k}")));
                }
                Ok(k) => kinds.push(k as i16),
            }
        }
        let after = if r.page_token.is_empty() {
            Uuid::nil()
        } else {
            Uuid::parse_str(&r.page_token)
                .map_err(|_| invalid("page_token: not a token from a previous response"))?
        };
        let mut conn = self.begin(&tenant).await?;
        let rows = recipients::list(&mut conn, &tenant, after, &kinds, &r.subject_id, size + 1)
            .await
            .map_err(db)?;
        let more = rows.len() as i64 > size;
        let page = &rows[..rows.len().min(size as usize)];
        Ok(Response::new(ListRecipientsResponse {
            recipients: page.iter().map(to_proto).collect(),
            next_page_token: match page.last() {
                Some(l) if more => l.recipient_id.to_string(),
                _ => String::new(),
            },
        }))
    }

    async fn set_preferences(
        &self,
        req: Request<SetPreferencesRequest>,
    ) -> Result<Response<Recipient>, Status> {
        let caller = Caller::from_request(&req)?;
        caller.require(&[Role::VendorAdmin, Role::TenantAdmin, Role::Analyst])?;
        let tenant = caller.tenant()?.to_owned();
        tracing::Span::current().record("tenant", tenant.as_str());
        let admin = caller.has_any(ADMINS);
        let r = req.into_inner();
        require_request_id(&r.request_id)?;
        let id = parse_uuid(&r.recipient_id, "recipient_id")?;
        let prefs = r
            .preferences
            .clone()
            .ok_or_else(|| invalid("preferences: required"))?;
        let hash = idempotency::request_hash("SetPreferences", &r);
        // An analyst's keys are their own: the key names the caller inside
        // the tenant's keys (a line break no request id contains keeps it
        // apart from every admin's key), so the row stays the tenant's under
        // row-level security.
        let key = if admin {
            r.request_id.clone()
        } else {
            format!("{}\n{}", caller.subject, r.request_id)
        };
        let mut tx = self.begin(&tenant).await?;
        if let Claim::Replay(bytes) =
            idempotency::begin(&mut tx, &tenant, &key, "SetPreferences", &hash).await?
        {
            return decode_replay(&bytes);
        }
        // An analyst reaches their own recipients, also the vendor-wide ones.
        let tenants: Vec<&str> = if admin {
            vec![&tenant]
        } else {
            vec![&tenant, VENDOR_TENANT]
        };
        let row = lock(&mut tx, &tenants, id)
            .await?
            .ok_or_else(|| not_found(&r.recipient_id))?;
        let own = row.subject_id == caller.subject
            && matches!(
                row.kind(),
                RecipientKind::Analyst | RecipientKind::Supervisor | RecipientKind::OnCall
            );
        if !admin && !own {
            return Err(not_found(&r.recipient_id));
        }
        check_version(r.expected_version, &row)?;
        let addrs = [row.email.clone(), row.phone.clone(), row.pager.clone()];
        check_preferences(&prefs, &addrs, "preferences")?;
        recipients::set_preferences(&mut tx, id, &prefs.encode_to_vec())
            .await
            .map_err(db)?;
        audit::record(
            &mut tx,
            &caller,
            &tenant,
            vec![id.to_string()],
            &r.request_id,
        )
        .await
        .map_err(db)?;
        let resp = to_proto(&get(&mut tx, id).await?);
        idempotency::finish(&mut tx, &tenant, &key, &resp.encode_to_vec())
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(Response::new(resp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wardline_proto::notification::{QuietHours, Subscription};

    #[test]
    fn addresses_are_checked_per_channel() {
        let a = |c: NotificationChannel, s: &str| ChannelAddress {
            channel: c as i32,
            address: s.into(),
        };
        let ok = addresses(
            &[
                a(NotificationChannel::Email, "rn@stmarys.org"),
                a(NotificationChannel::Sms, "+13125550100"),
            ],
            "recipient.addresses",
        )
        .unwrap();
        assert_eq!(ok[0], "rn@stmarys.org");
        for (list, field) in [
            (
                vec![a(NotificationChannel::Email, "nope")],
                "recipient.addresses[0].address",
            ),
            (
                vec![a(NotificationChannel::Sms, "3125550100")],
                "recipient.addresses[0].address",
            ),
            (
                vec![a(NotificationChannel::Webhook, "https://x")],
                "recipient.addresses[0].channel",
            ),
            (
                vec![
                    a(NotificationChannel::Email, "a@b.org"),
                    a(NotificationChannel::Email, "c@d.org"),
                ],
                "recipient.addresses[1].channel",
            ),
        ] {
            let e = addresses(&list, "recipient.addresses").unwrap_err();
            assert!(e.message().starts_with(field), "{}", e.message());
        }
    }

    #[test]
    fn preferences_need_an_address_per_channel_and_valid_quiet_hours() {
        let addrs = ["rn@stmarys.org".to_owned(), String::new(), String::new()];
        let mut p = Preferences {
            subscriptions: vec![Subscription {
                event_kind: crate::domain::EventKind::TicketOnHold as i32,
                channels: vec![NotificationChannel::Email as i32],
            }],
            quiet_hours: Some(QuietHours {
                start: "22:00".into(),
                end: "07:00".into(),
                time_zone: "America/Chicago".into(),
            }),
        };
        check_preferences(&p, &addrs, "preferences").unwrap();
        p.subscriptions[0].channels = vec![NotificationChannel::Sms as i32];
        let e = check_preferences(&p, &addrs, "preferences").unwrap_err();
        assert!(
            e.message()
                .starts_with("preferences.subscriptions[0].channels[0]"),
            "{}",
            e.message()
        );
        p.subscriptions.clear();
        p.quiet_hours.as_mut().unwrap().time_zone = "Mars/Olympus".into();
        let e = check_preferences(&p, &addrs, "preferences").unwrap_err();
        assert!(e.message().starts_with("preferences.quiet_hours.time_zone"));
    }
}
