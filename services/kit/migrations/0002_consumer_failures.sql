-- Failures the consumer loop counted against an event's delivery budget:
-- a handler that asked to retry, a database error that was not a lost
-- connection, a panic. When `failures` reaches the consumer's budget the
-- event is dead-lettered. A lost connection is not counted (the loop
-- pauses instead), so an outage of any length spends nothing. The row is
-- removed when the event is applied or dead-lettered.
CREATE TABLE consumer_failures (
    event_id    UUID PRIMARY KEY,
    subject     TEXT NOT NULL,
    failures    INT NOT NULL,
    last_reason TEXT NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
