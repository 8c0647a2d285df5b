-- Webhook signing secrets sealed at rest (AES-256-GCM under the operator's
-- NOTIFICATION_SECRET_KEYS, see src/domain/sealing.rs). The clear columns
-- stay only until the service seals the rows written before this migration
-- at start-up (Application::build), which also empties them.
ALTER TABLE webhook_endpoints
    ADD COLUMN secret_sealed BYTEA,
    ADD COLUMN previous_sealed BYTEA,
    ALTER COLUMN secret DROP NOT NULL;
