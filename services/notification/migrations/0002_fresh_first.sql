-- First attempts go before retries: a backlog of deliveries retrying
-- against a dead endpoint must not delay a fresh notification (the sender
-- claims in this order).
CREATE INDEX deliveries_due_fresh_first ON deliveries (attempt_count, next_attempt_at)
    WHERE state <> 4 AND sending_since IS NULL;
DROP INDEX deliveries_due;
