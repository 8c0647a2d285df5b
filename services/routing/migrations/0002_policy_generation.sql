-- One number that grows whenever something routing caches per tenant
-- changes: category rules, SLA targets, and the static part of the analyst
-- directory (coverage, skills, shifts, time zone, credentials). Every
-- routing decision reads it (one row, no lock) and reloads its cache when
-- it moved, so a change committed by any replica is seen by the next
-- decision everywhere. Triggers bump it, so no write path can forget to.
--
-- Deliberately not bumped by the engine's own writes (current_load,
-- idle_since) nor by availability or max_concurrent: decisions read those
-- fresh every time.
CREATE TABLE policy_generation (
    only_row    BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
    generation  BIGINT NOT NULL
);
INSERT INTO policy_generation (only_row, generation) VALUES (TRUE, 1);

CREATE FUNCTION routing_bump_policy_generation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE policy_generation SET generation = generation + 1;
    RETURN NULL;
END
$$;

CREATE TRIGGER category_rules_generation AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON category_rules
    FOR EACH STATEMENT EXECUTE FUNCTION routing_bump_policy_generation();
CREATE TRIGGER sla_targets_generation AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON sla_targets
    FOR EACH STATEMENT EXECUTE FUNCTION routing_bump_policy_generation();
CREATE TRIGGER analyst_coverage_generation AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON analyst_coverage
    FOR EACH STATEMENT EXECUTE FUNCTION routing_bump_policy_generation();
CREATE TRIGGER analyst_skills_generation AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON analyst_skills
    FOR EACH STATEMENT EXECUTE FUNCTION routing_bump_policy_generation();
CREATE TRIGGER analyst_shifts_generation AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON analyst_shifts
    FOR EACH STATEMENT EXECUTE FUNCTION routing_bump_policy_generation();
CREATE TRIGGER analysts_generation AFTER INSERT OR DELETE OR TRUNCATE ON analysts
    FOR EACH STATEMENT EXECUTE FUNCTION routing_bump_policy_generation();
CREATE TRIGGER analysts_static_generation AFTER UPDATE OF analyst_id, time_zone, credentials ON analysts
    FOR EACH STATEMENT EXECUTE FUNCTION routing_bump_policy_generation();
