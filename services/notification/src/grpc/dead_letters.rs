//! EventDeadLetterService: poison events notification could not apply,
//! from the kit's `dead_letters` table (listing written once in
//! `wardline_kit::dead_letters`), as opposed to dead-lettered deliveries.

use tonic::{Request, Response, Status};
use wardline_kit::auth::Caller;
use wardline_kit::dead_letters::DeadLetterRow;
use wardline_kit::events::timestamp;
use wardline_proto::notification::event_dead_letter_service_server::EventDeadLetterService;
use wardline_proto::notification::{
    EventDeadLetter, ListEventDeadLettersRequest, ListEventDeadLettersResponse,
};

use super::{ADMINS, Api};

fn dead_letter(r: &DeadLetterRow) -> EventDeadLetter {
    EventDeadLetter {
        event_id: r.event_id.to_string(),
        subject: r.subject.clone(),
        tenant_id: r.tenant_id.clone(),
        reason: r.reason.clone(),
        attempts: u32::try_from(r.deliveries).unwrap_or(0),
        first_seen_at: Some(timestamp(r.first_seen_at)),
    }
}

#[tonic::async_trait]
impl EventDeadLetterService for Api {
    async fn list_event_dead_letters(
        &self,
        req: Request<ListEventDeadLettersRequest>,
    ) -> Result<Response<ListEventDeadLettersResponse>, Status> {
        let caller = Caller::from_request(&req)?;
        let r = req.into_inner();
        let page = wardline_kit::dead_letters::list(
            &self.pool,
            &caller,
            ADMINS,
            r.first_seen.as_ref(),
            r.page_size,
            &r.page_token,
        )
        .await?;
        Ok(Response::new(ListEventDeadLettersResponse {
            dead_letters: page.rows.iter().map(dead_letter).collect(),
            next_page_token: page.next_page_token,
        }))
    }
}
