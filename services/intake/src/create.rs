//! Group commit for CreateTicket.
//!
//! Why: a ticket and its `ticket.created` outbox row must commit together,
//! and one transaction per request costs about seven round trips and one
//! WAL flush per ticket. Here each request is validated in its own task and
//! handed to a shared writer; the writer takes whatever requests are waiting
//! (up to `max_batch`) and commits them in one transaction of five
//! statements: claim the idempotency keys, check tenants and facilities,
//! insert the tickets, insert the outbox rows (each with its own request's
//! trace context), store the responses; the block of numbers per tenant is
//! reserved in between on a second connection, in a short transaction of
//! its own (see [`storage::reserve_blocks`] for why that is safe). Nobody
//! waits for a timer: a request that finds the writer idle
//! is written at once, alone; under load, requests that arrive while
//! `concurrency` batches are in flight form the next batch, so the cost per
//! ticket falls as the load rises.
//!
//! What must hold (and is tested): every request gets the answer it would
//! have got alone, i.e. its own ticket, a replay of its earlier response,
//! or its own error naming the field or id; one bad request never fails
//! its neighbours (a batch that fails for a reason other than the database
//! being unavailable is retried one request at a time); two requests with
//! the same key never share a batch.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use prost::Message;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tonic::Status;
use wardline_kit::events::envelope;
use wardline_kit::grpc::db_status;
use wardline_kit::idempotency::{self, Claim};
use wardline_kit::outbox::{self, OutboxError, TraceContext};
use wardline_proto::events::TicketCreated;
use wardline_proto::events::event_envelope::Payload;
use wardline_proto::intake::Ticket;

use crate::domain::ticket_number;
use crate::grpc::convert;
use crate::storage::{self, TicketRow};

/// Serializes number reservations within the process (see [`commit`]).
static RESERVING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The idempotency operation name of ticket creation.
pub const OPERATION: &str = "CreateTicket";

/// A validated request waiting for its number.
pub struct NewTicket {
    /// The row, everything filled in but `seq` and `number`.
    pub row: TicketRow,
    /// The caller's idempotency key.
    pub request_id: String,
    /// Hash of the request (idempotency).
    pub hash: Vec<u8>,
    /// The request's trace context, carried to its outbox row.
    pub trace: TraceContext,
    /// Its audit record, appended with the ticket in the batch.
    pub audit: wardline_kit::audit::Entry,
}

/// What a create request gets back.
#[derive(Debug)]
pub enum Created {
    /// A new ticket.
    Ticket(Box<Ticket>),
    /// The stored response of an earlier request with the same key.
    Replay(Vec<u8>),
}

type Reply = oneshot::Sender<Result<Created, Status>>;
type Item = (NewTicket, Reply);

/// Settings of the writer.
#[derive(Debug, Clone, Copy)]
pub struct WriterConfig {
    /// `INTAKE_CREATE_MAX_BATCH`: most tickets per transaction.
    pub max_batch: usize,
    /// `INTAKE_CREATE_CONCURRENCY`: transactions in flight at once.
    pub concurrency: usize,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            max_batch: 256,
            concurrency: 4,
        }
    }
}

/// Handle to the shared writer. Cloning is cheap; the writer stops when the
/// last handle is dropped, after finishing what it holds.
#[derive(Clone)]
pub struct CreateWriter {
    tx: mpsc::Sender<Item>,
}

impl CreateWriter {
    /// Starts the writer on `pool`.
    pub fn start(pool: sqlx::PgPool, cfg: WriterConfig) -> Self {
        let cfg = WriterConfig {
            max_batch: cfg.max_batch.max(1),
            concurrency: cfg.concurrency.max(1),
        };
        // Room for a few batches; beyond it callers wait (back-pressure)
        // instead of queueing without bound.
        let (tx, rx) = mpsc::channel(cfg.max_batch * (cfg.concurrency + 1));
        tokio::spawn(collect(pool, rx, cfg));
        Self { tx }
    }

    /// Creates the ticket (or replays / refuses it) as part of the next batch.
    pub async fn create(&self, ticket: NewTicket) -> Result<Created, Status> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((ticket, reply))
            .await
            .map_err(|_| shutting_down())?;
        answer.await.map_err(|_| shutting_down())?
    }
}

fn shutting_down() -> Status {
    Status::unavailable("intake is shutting down; retry with the same request_id")
}

async fn collect(pool: sqlx::PgPool, mut rx: mpsc::Receiver<Item>, cfg: WriterConfig) {
    let permits = Arc::new(Semaphore::new(cfg.concurrency));
    while let Some(first) = rx.recv().await {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        // Everything that arrived while we waited for a free slot joins.
        let mut batch = vec![first];
        while batch.len() < cfg.max_batch {
            match rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        let pool = pool.clone();
        tokio::spawn(async move {
            write(&pool, batch).await;
            drop(permit);
        });
    }
}

/// Writes a batch, then (after it committed) any requests that repeated a
/// key already in it, so a retry racing its original replays the answer.
async fn write(pool: &sqlx::PgPool, batch: Vec<Item>) {
    let mut pending = batch;
    while !pending.is_empty() {
        let mut seen = HashSet::new();
        let (now, later): (Vec<Item>, Vec<Item>) = pending
            .into_iter()
            .partition(|(t, _)| seen.insert((t.row.tenant_id.clone(), t.request_id.clone())));
        metrics::histogram!("wardline_intake_create_batch_size").record(now.len() as f64);
        write_unique(pool, now).await;
        pending = later;
    }
}

async fn write_unique(pool: &sqlx::PgPool, batch: Vec<Item>) {
    let (tickets, replies): (Vec<NewTicket>, Vec<Reply>) = batch.into_iter().unzip();
    let mut answers = None;
    for attempt in 1..=3 {
        match commit(pool, &tickets).await {
            Ok(a) => {
                answers = Some(a);
                break;
            }
            Err(e) if is_conflict(&e) && attempt < 3 => continue,
            Err(e) if is_unavailable(&e) || tickets.len() == 1 => {
                let status = status_of(&e);
                answers = Some(tickets.iter().map(|_| Err(status.clone())).collect());
                break;
            }
            Err(e) => {
                // Something in this batch upset the database: find it by
                // writing each request alone, so its neighbours still succeed.
                tracing::warn!(error = %e, size = tickets.len(), "create batch failed; writing its tickets one at a time");
                let mut each = Vec::with_capacity(tickets.len());
                for t in &tickets {
                    let one = commit(pool, std::slice::from_ref(t)).await;
                    each.push(match one {
                        Ok(mut a) => answered(a.pop()),
                        Err(e) => Err(status_of(&e)),
                    });
                }
                answers = Some(each);
                break;
            }
        }
    }
    let answers = answers.unwrap_or_default();
    for (reply, answer) in replies.into_iter().zip(answers) {
        // The caller may have gone (deadline); its ticket stays committed
        // and a retry with the same key replays it.
        let _ = reply.send(answer);
    }
}

/// One transaction for the whole batch; an answer per ticket, in order.
async fn commit(
    pool: &sqlx::PgPool,
    tickets: &[NewTicket],
) -> Result<Vec<Result<Created, Status>>, OutboxError> {
    // Every tenant's scope: a group commit spans the tenants of its batch
    // (that is its point). Each ticket's tenant is its authenticated
    // caller's, set by the handler before the ticket reaches the writer,
    // and every statement below binds each row's own tenant.
    let mut tx = wardline_kit::db::begin(pool, wardline_kit::db::Scope::AllTenants).await?;
    let keys: Vec<idempotency::Key<'_>> = tickets
        .iter()
        .map(|t| {
            (
                t.row.tenant_id.as_str(),
                t.request_id.as_str(),
                t.hash.as_slice(),
            )
        })
        .collect();
    let claims = idempotency::claim_many(&mut tx, OPERATION, &keys).await?;
    let mut answers: Vec<Option<Result<Created, Status>>> = Vec::with_capacity(tickets.len());
    let mut fresh = Vec::new();
    for (i, claim) in claims.into_iter().enumerate() {
        answers.push(match claim {
            Ok(Claim::Fresh) => {
                fresh.push(i);
                None
            }
            Ok(Claim::Replay(bytes)) => Some(Ok(Created::Replay(bytes))),
            Err(e) => Some(Err(Status::from(e))),
        });
    }
    if fresh.is_empty() {
        tx.commit().await?;
        return Ok(answers.into_iter().map(answered).collect());
    }

    // Tenants and facilities, then a block of numbers per tenant.
    let pairs: Vec<(String, String)> = fresh
        .iter()
        .map(|&i| {
            let r = &tickets[i].row;
            (r.tenant_id.clone(), r.facility_id.clone())
        })
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let targets = storage::check_targets(&mut tx, &pairs).await?;
    let mut refused = Vec::new();
    let mut counts: HashMap<String, i64> = HashMap::new();
    let mut accepted = Vec::new();
    for &i in &fresh {
        let r = &tickets[i].row;
        match refusal(&targets, r) {
            Some(status) => {
                answers[i] = Some(Err(status));
                refused.push(i);
            }
            None => {
                *counts.entry(r.tenant_id.clone()).or_default() += 1;
                accepted.push(i);
            }
        }
    }
    let counts: Vec<(String, i64)> = counts.into_iter().collect();
    let mut blocks = {
        // One reservation at a time in this process: two multi-tenant
        // reservations could otherwise lock the same rows in different
        // orders (seen in the bench as deadlocks). It is one short statement.
        let _turn = RESERVING.lock().await;
        storage::reserve_blocks(pool, &counts).await?
    };

    let mut rows = Vec::with_capacity(accepted.len());
    let mut numbered = Vec::with_capacity(accepted.len());
    for &i in &accepted {
        let mut row = tickets[i].row.clone();
        let Some(block) = blocks.get_mut(&row.tenant_id).filter(|b| b.active) else {
            // Suspended between the check and the reservation.
            answers[i] = Some(Err(suspended(&row.tenant_id)));
            refused.push(i);
            continue;
        };
        row.seq = block.first;
        row.number = ticket_number(&block.prefix, block.first);
        block.first += 1;
        rows.push(row);
        numbered.push(i);
    }
    let events: Vec<_> = rows
        .iter()
        .map(|row| {
            envelope(
                "intake",
                &row.tenant_id,
                &row.ticket_id.to_string(),
                1,
                Payload::TicketCreated(TicketCreated {
                    ticket: Some(convert::snapshot(row)),
                    caller: Some(convert::caller_contact(row)),
                    category_classified: row.category_classified,
                }),
            )
        })
        .collect();
    let responses: Vec<Ticket> = rows.iter().map(convert::ticket).collect();
    if !rows.is_empty() {
        let refs: Vec<&TicketRow> = rows.iter().collect();
        storage::insert_tickets(&mut tx, &refs).await?;
        let traced: Vec<_> = events
            .iter()
            .zip(&numbered)
            .map(|(e, &i)| (e, &tickets[i].trace))
            .collect();
        outbox::enqueue_traced(&mut tx, &traced).await?;
        let audited: Vec<_> = numbered.iter().map(|&i| tickets[i].audit.clone()).collect();
        wardline_kit::audit::append(&mut tx, &audited).await?;
        let stored: Vec<(&str, &str, Vec<u8>)> = numbered
            .iter()
            .zip(&responses)
            .map(|(&i, resp)| {
                (
                    tickets[i].row.tenant_id.as_str(),
                    tickets[i].request_id.as_str(),
                    convert::stored_ticket(resp).encode_to_vec(),
                )
            })
            .collect();
        idempotency::finish_many(&mut tx, &stored).await?;
    }
    if !refused.is_empty() {
        // A refused request leaves no key behind: corrected, it may retry
        // with the same request_id.
        let keys: Vec<(&str, &str)> = refused.iter().map(|&i| (keys[i].0, keys[i].1)).collect();
        idempotency::release_many(&mut tx, &keys).await?;
    }
    tx.commit().await?;
    for (&i, resp) in numbered.iter().zip(responses) {
        answers[i] = Some(Ok(Created::Ticket(Box::new(resp))));
    }
    Ok(answers.into_iter().map(answered).collect())
}

/// Every index gets an answer above; this only guards the invariant.
fn answered(a: Option<Result<Created, Status>>) -> Result<Created, Status> {
    a.unwrap_or_else(|| Err(Status::internal("internal error")))
}

fn refusal(targets: &HashMap<(String, String), storage::Target>, r: &TicketRow) -> Option<Status> {
    let target = targets.get(&(r.tenant_id.clone(), r.facility_id.clone()));
    match target {
        Some(t) if !t.tenant_exists => Some(Status::not_found(format!(
            "tenant {} not found",
            r.tenant_id
        ))),
        None => Some(Status::not_found(format!(
            "tenant {} not found",
            r.tenant_id
        ))),
        Some(t) if !t.active => Some(suspended(&r.tenant_id)),
        Some(t) if !t.facility_exists => Some(Status::not_found(format!(
            "facility_id: facility {} not found",
            r.facility_id
        ))),
        Some(_) => None,
    }
}

fn suspended(tenant: &str) -> Status {
    Status::failed_precondition(format!("tenant {tenant} is suspended"))
}

fn sql_error(e: &OutboxError) -> Option<&sqlx::Error> {
    match e {
        OutboxError::Db(e) => Some(e),
        _ => None,
    }
}

fn is_conflict(e: &OutboxError) -> bool {
    matches!(sql_error(e), Some(sqlx::Error::Database(db))
        if matches!(db.code().as_deref(), Some("40001" | "40P01")))
}

fn is_unavailable(e: &OutboxError) -> bool {
    sql_error(e).is_some_and(wardline_kit::grpc::db_unavailable)
}

fn status_of(e: &OutboxError) -> Status {
    match e {
        OutboxError::Db(e) => db_status(e),
        other => {
            tracing::error!(error = %other, "cannot write ticket.created");
            Status::internal("internal error")
        }
    }
}
