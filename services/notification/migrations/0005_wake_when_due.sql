-- Wake the sender for new deliveries and for one a RetryDelivery made
-- pending again, not for every write of next_attempt_at: the sender's own
-- records (a retry later, a finished delivery) and the rate limit's
-- push-backs woke it for a round that found nothing, four statements each,
-- about a fifth of notification's statements under load. What falls due
-- later is found by the sender's own timing (its scan interval, or the
-- soonest push-back of its last round).
DROP TRIGGER deliveries_notify ON deliveries;
CREATE TRIGGER deliveries_notify AFTER INSERT ON deliveries
    FOR EACH STATEMENT EXECUTE FUNCTION wardline_deliveries_notify();
-- State 1 is PENDING (DeliveryState); only RetryDelivery moves a row back
-- to it. Notifications of one transaction fold into one.
CREATE TRIGGER deliveries_pending_again AFTER UPDATE OF state ON deliveries
    FOR EACH ROW WHEN (NEW.state = 1 AND OLD.state <> 1)
    EXECUTE FUNCTION wardline_deliveries_notify();
