//! TemplateService: the effective template per event kind and channel, and
//! a tenant's overrides (checked: syntax, only the kind's variables, length
//! or JSON with the longest values).

use prost::Message;
use tonic::{Request, Response, Status};
use wardline_kit::audit;
use wardline_kit::auth::Caller;
use wardline_kit::events::timestamp;
use wardline_kit::idempotency::{self, Claim};
use wardline_kit::validate;
use wardline_proto::notification::template_service_server::TemplateService;
use wardline_proto::notification::{
    GetTemplateRequest, SetTemplateOverrideRequest, Source, Template, TemplateVariable,
};

use super::{
    ADMINS, Api, channel, db, decode_replay, event_kind, invalid, require_request_id, tenant_of,
};
use crate::domain::template::{self, TemplateError};
use crate::domain::{EventKind, NotificationChannel};
use crate::store::templates::{self as store, OverrideRow as Row};

fn effective(kind: EventKind, ch: NotificationChannel, row: Option<&Row>) -> Template {
    let variables = template::variables(kind)
        .into_iter()
        .map(|v| TemplateVariable {
            name: v.name.to_owned(),
            description: v.description.to_owned(),
            example: v.example.to_owned(),
        })
        .collect();
    match row {
        Some(r) => Template {
            event_kind: kind as i32,
            channel: ch as i32,
            subject: r.subject.clone(),
            body: r.body.clone(),
            variables,
            source: Source::Tenant as i32,
            version: r.version as u64,
            updated_at: Some(timestamp(r.updated_at)),
        },
        None => {
            let d = template::default_template(kind, ch);
            Template {
                event_kind: kind as i32,
                channel: ch as i32,
                subject: d.subject,
                body: d.body,
                variables,
                source: Source::Default as i32,
                version: 0,
                updated_at: None,
            }
        }
    }
}

async fn load(
    conn: &mut sqlx::PgConnection,
    tenant: &str,
    kind: EventKind,
    ch: NotificationChannel,
    lock: bool,
) -> Result<Option<Row>, Status> {
    store::load(conn, tenant, kind, ch, lock).await.map_err(db)
}

#[tonic::async_trait]
impl TemplateService for Api {
    async fn get_template(
        &self,
        req: Request<GetTemplateRequest>,
    ) -> Result<Response<Template>, Status> {
        let caller = Caller::from_request(&req)?;
        let tenant = tenant_of(&caller, ADMINS)?;
        let r = req.into_inner();
        let kind = event_kind(r.event_kind, "event_kind")?;
        let ch = channel(r.channel, "channel")?;
        let mut conn = self.begin(&tenant).await?;
        let row = load(&mut conn, &tenant, kind, ch, false).await?;
        Ok(Response::new(effective(kind, ch, row.as_ref())))
    }

    async fn set_template_override(
        &self,
        req: Request<SetTemplateOverrideRequest>,
    ) -> Result<Response<Template>, Status> {
        let caller = Caller::from_request(&req)?;
        let tenant = tenant_of(&caller, ADMINS)?;
        let r = req.into_inner();
        require_request_id(&r.request_id)?;
        let kind = event_kind(r.event_kind, "event_kind")?;
        let ch = channel(r.channel, "channel")?;
        if !r.reset {
            if ch != NotificationChannel::Email && !r.subject.is_empty() {
                return Err(invalid("subject: only email templates have a subject"));
            }
            if !r.subject.is_empty()
                && !validate::is_display_text(&r.subject, crate::limits::TEMPLATE_SUBJECT)
            {
                return Err(invalid(format!(
                    "subject: at most {} characters on one line, no control characters",
                    crate::limits::TEMPLATE_SUBJECT
                )));
            }
            if !validate::is_free_text(&r.body, crate::limits::TEMPLATE_BODY) {
                return Err(invalid(format!(
                    "body: 1-{} characters, not blank, no control characters other than line breaks and tabs",
                    crate::limits::TEMPLATE_BODY
                )));
            }
            let t = template::Template {
                subject: r.subject.clone(),
                body: r.body.clone(),
            };
            // CPU-bound under the template budget: off the runtime.
            tokio::task::spawn_blocking(move || template::validate(kind, ch, &t))
                .await
                .map_err(|_| Status::internal("template check failed"))?
                .map_err(|e| match e {
                    TemplateError::Render(reason) => {
                        invalid(format!("body: does not render: {reason}"))
                    }
                    other => invalid(other.to_string()),
                })?;
        }
        let hash = idempotency::request_hash("SetTemplateOverride", &r);
        let mut tx = self.begin(&tenant).await?;
        if let Claim::Replay(bytes) = idempotency::begin(
            &mut tx,
            &tenant,
            &r.request_id,
            "SetTemplateOverride",
            &hash,
        )
        .await?
        {
            return decode_replay(&bytes);
        }
        let current = load(&mut tx, &tenant, kind, ch, true).await?;
        let held = current.as_ref().map(|c| c.version as u64).unwrap_or(0);
        if r.expected_version != 0 && r.expected_version != held {
            return Err(Status::aborted(format!(
                "expected_version: the override is at version {held}, not {}",
                r.expected_version
            )));
        }
        if r.reset {
            store::delete(&mut tx, &tenant, kind, ch)
                .await
                .map_err(db)?;
        } else {
            store::upsert(&mut tx, &tenant, kind, ch, &r.subject, &r.body)
                .await
                .map_err(db)?;
        }
        // The override is named by its event kind and channel (never its text).
        audit::record(
            &mut tx,
            &caller,
            &tenant,
            vec![format!("{}/{}", kind.as_str_name(), ch.as_str_name())],
            &r.request_id,
        )
        .await
        .map_err(db)?;
        let row = load(&mut tx, &tenant, kind, ch, false).await?;
        let resp = effective(kind, ch, row.as_ref());
        idempotency::finish(&mut tx, &tenant, &r.request_id, &resp.encode_to_vec())
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(Response::new(resp))
    }
}
