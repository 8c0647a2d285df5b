//! DeadLetterService: poison events routing could not apply, from the
//! kit's `dead_letters` table (listing written once in
//! `wardline_kit::dead_letters`).

use tonic::{Request, Response, Status};
use wardline_kit::auth::{Caller, Role};
use wardline_kit::dead_letters::DeadLetterRow;
use wardline_kit::events::timestamp;
use wardline_proto::routing::dead_letter_service_server::DeadLetterService;
use wardline_proto::routing::{DeadLetter, ListDeadLettersRequest, ListDeadLettersResponse};

use super::Api;

const READERS: &[Role] = &[Role::VendorAdmin, Role::TenantAdmin];

fn dead_letter(r: &DeadLetterRow) -> DeadLetter {
    DeadLetter {
        event_id: r.event_id.to_string(),
        subject: r.subject.clone(),
        tenant_id: r.tenant_id.clone(),
        reason: r.reason.clone(),
        attempts: u32::try_from(r.deliveries).unwrap_or(0),
        first_seen_at: Some(timestamp(r.first_seen_at)),
    }
}

#[tonic::async_trait]
impl DeadLetterService for Api {
    async fn list_dead_letters(
        &self,
        req: Request<ListDeadLettersRequest>,
    ) -> Result<Response<ListDeadLettersResponse>, Status> {
        let caller = Caller::from_request(&req)?;
        let r = req.into_inner();
        let page = wardline_kit::dead_letters::list(
            &self.pool,
            &caller,
            READERS,
            r.first_seen.as_ref(),
            r.page_size,
            &r.page_token,
        )
        .await?;
        Ok(Response::new(ListDeadLettersResponse {
            dead_letters: page.rows.iter().map(dead_letter).collect(),
            next_page_token: page.next_page_token,
        }))
    }
}

/// The handler against a real PostgreSQL.
#[cfg(test)]
mod db_tests {
    use super::*;
    use crate::grpc::analysts::db_tests::{api, req, who};
    use uuid::Uuid;

    #[tokio::test]
    async fn newest_first_per_tenant_with_pages() {
        let (_db, api) = api("routing_api_dead").await;
        for (i, tenant) in ["stmarys", "lakeside", "stmarys", "stmarys"]
            .iter()
            .enumerate()
        {
            sqlx::query(
                "INSERT INTO dead_letters (event_id, subject, tenant_id, reason, deliveries, payload, first_seen_at)
                 VALUES ($1, $2, $3, 'decode_failed', 5, '\\x00', now() - make_interval(mins => $4))",
            )
            .bind(Uuid::now_v7())
            .bind(format!("wardline.events.{tenant}.ticket.created"))
            .bind(tenant)
            .bind(10 - i as i32)
            .execute(&api.pool)
            .await
            .unwrap();
        }
        let vendor = who("ops", None, &[Role::VendorAdmin]);
        let all = api
            .list_dead_letters(req(ListDeadLettersRequest::default(), &vendor))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(all.dead_letters.len(), 4);
        assert!(all.next_page_token.is_empty());
        let seen: Vec<_> = all
            .dead_letters
            .iter()
            .map(|d| d.first_seen_at.unwrap().seconds)
            .collect();
        assert!(seen.windows(2).all(|w| w[0] >= w[1]), "newest first");
        assert_eq!(all.dead_letters[0].attempts, 5);
        let admin = who("boss", Some("stmarys"), &[Role::TenantAdmin]);
        let page = |token: String| ListDeadLettersRequest {
            page_size: 2,
            page_token: token,
            ..Default::default()
        };
        let first = api
            .list_dead_letters(req(page(String::new()), &admin))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(first.dead_letters.len(), 2);
        assert!(!first.next_page_token.is_empty());
        let second = api
            .list_dead_letters(req(page(first.next_page_token), &admin))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(second.dead_letters.len(), 1);
        assert!(second.next_page_token.is_empty());
        let mine: Vec<_> = first
            .dead_letters
            .iter()
            .chain(&second.dead_letters)
            .collect();
        assert!(mine.iter().all(|d| d.tenant_id == "stmarys"));
        assert_eq!(mine[0].event_id, all.dead_letters[0].event_id);
        // A vendor naming a tenant sees only that one.
        let named = who("ops", Some("lakeside"), &[Role::VendorAdmin]);
        let named = Caller {
            all_tenants: true,
            ..named
        };
        let lake = api
            .list_dead_letters(req(ListDeadLettersRequest::default(), &named))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(lake.dead_letters.len(), 1);
        assert_eq!(lake.dead_letters[0].tenant_id, "lakeside");
    }
}
