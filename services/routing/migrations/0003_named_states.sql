-- States and kinds by name, not by number (services/README.md, "Enums in
-- SQL by name"): SQL reads state = 'waiting', never state = 1. Existing
-- rows are converted in place. Assignment states and decision triggers are
-- the labels wardline_proto::enums::ProtoEnum derives from the .proto (a
-- test compares these CHECK lists with wardline_kit::sql::check_list), as
-- are the ticket's priority, category and caller role (at the end);
-- routing's own ticket states and timer kinds have no proto enum and are
-- mapped by store::tickets::TicketState and store::timers::TimerKind.

DROP INDEX tickets_queue;
ALTER TABLE tickets ALTER COLUMN state TYPE TEXT USING
    CASE state WHEN 1 THEN 'waiting' WHEN 2 THEN 'assigned' WHEN 3 THEN 'acknowledged' WHEN 4 THEN 'done' END;
ALTER TABLE tickets ADD CONSTRAINT tickets_state_named
    CHECK (state IN ('waiting', 'assigned', 'acknowledged', 'done'));
CREATE INDEX tickets_queue ON tickets (tenant_id, priority, created_at) WHERE state = 'waiting';

DROP INDEX assignments_one_live;
ALTER TABLE assignments ALTER COLUMN state TYPE TEXT USING
    CASE state WHEN 1 THEN 'pending-ack' WHEN 2 THEN 'acknowledged' WHEN 3 THEN 'timed-out'
               WHEN 4 THEN 'transferred' WHEN 5 THEN 'completed' WHEN 6 THEN 'escalated' END;
ALTER TABLE assignments ADD CONSTRAINT assignments_state_named
    CHECK (state IN ('pending-ack', 'acknowledged', 'timed-out', 'transferred', 'completed', 'escalated'));
ALTER TABLE assignments ALTER COLUMN trigger TYPE TEXT USING
    CASE trigger WHEN 1 THEN 'ticket-created' WHEN 2 THEN 'ticket-reopened' WHEN 3 THEN 'ticket-transferred'
                 WHEN 4 THEN 'ack-timeout' WHEN 5 THEN 'queue-drain' WHEN 6 THEN 'escalation' END;
ALTER TABLE assignments ADD CONSTRAINT assignments_trigger_named
    CHECK (trigger IN ('ticket-created', 'ticket-reopened', 'ticket-transferred', 'ack-timeout', 'queue-drain',
                       'escalation'));
-- At most one live assignment per ticket, whatever the replicas do.
CREATE UNIQUE INDEX assignments_one_live ON assignments (ticket_id) WHERE state IN ('pending-ack', 'acknowledged');

ALTER TABLE timers ALTER COLUMN kind TYPE TEXT USING
    CASE kind WHEN 1 THEN 'ack' WHEN 2 THEN 'response' WHEN 3 THEN 'resolution' END;
ALTER TABLE timers ADD CONSTRAINT timers_kind_named CHECK (kind IN ('ack', 'response', 'resolution'));

-- The ticket's priority, category and caller role: the proto's labels
-- ('p1' sorts before 'p2', so queue order is unchanged). Unspecified values
-- (never sent by intake) become what the decision already took them for.
ALTER TABLE tickets ALTER COLUMN priority TYPE TEXT USING
    CASE priority WHEN 1 THEN 'p1' WHEN 2 THEN 'p2' WHEN 4 THEN 'p4' ELSE 'p3' END;
ALTER TABLE tickets ADD CONSTRAINT tickets_priority_named CHECK (priority IN ('p1', 'p2', 'p3', 'p4'));
ALTER TABLE tickets ALTER COLUMN category TYPE TEXT USING
    CASE category WHEN 1 THEN 'orders' WHEN 2 THEN 'medication-administration'
                  WHEN 3 THEN 'clinical-documentation' WHEN 4 THEN 'results' WHEN 5 THEN 'patient-lists'
                  WHEN 6 THEN 'scheduling' WHEN 7 THEN 'registration-adt' WHEN 8 THEN 'login-access'
                  WHEN 9 THEN 'devices' WHEN 10 THEN 'printing' WHEN 11 THEN 'network' ELSE 'other' END;
ALTER TABLE tickets ADD CONSTRAINT tickets_category_named
    CHECK (category IN ('orders', 'medication-administration', 'clinical-documentation', 'results', 'patient-lists',
                        'scheduling', 'registration-adt', 'login-access', 'devices', 'printing', 'network', 'other'));
ALTER TABLE tickets ALTER COLUMN caller_role TYPE TEXT USING
    CASE caller_role WHEN 1 THEN 'physician' WHEN 2 THEN 'nurse' WHEN 3 THEN 'pharmacist'
                     WHEN 4 THEN 'other-clinical' ELSE 'non-clinical' END;
ALTER TABLE tickets ADD CONSTRAINT tickets_caller_role_named
    CHECK (caller_role IN ('physician', 'nurse', 'pharmacist', 'other-clinical', 'non-clinical'));
