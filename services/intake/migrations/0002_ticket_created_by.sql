-- Who filed each ticket, so a requester reads and acts only on their own
-- tickets (those they created, or are named on as the caller) and the
-- database answers "whose is this" without trusting a request field.
--
-- PHI judgement: created_by is the token subject of whoever called
-- CreateTicket: an identity-provider id of a workforce member or an
-- integration (the same kind of value as caller_id, author_id and
-- assignee_analyst_id), never a patient's and never free text. It is not
-- PHI; like the other ids it may appear in logs and spans as an id.
ALTER TABLE tickets ADD COLUMN created_by TEXT;
-- Before this column a requester could only file as themselves
-- (caller_id = subject), so the caller is the best known creator; a
-- ticket an analyst filed for someone reads as the caller's own, which is
-- what the caller may see anyway.
UPDATE tickets SET created_by = caller_id;
ALTER TABLE tickets ALTER COLUMN created_by SET NOT NULL;

-- A requester's listing: (created_by = me OR caller_id = me) within the
-- tenant, newest first; the planner ORs one index scan per column.
CREATE INDEX tickets_tenant_created_by ON tickets (tenant_id, created_by, ticket_id DESC);
CREATE INDEX tickets_tenant_caller ON tickets (tenant_id, caller_id, ticket_id DESC);
