-- Replays: a re-queued record is published again with the header `replay: true`. The count also
-- tells an old progress record (which names the ids of a committed batch) from a later replay of the
-- same id, so a partition takeover never marks a replayed record sent unpublished.
ALTER TABLE outbox ADD COLUMN replays integer NOT NULL DEFAULT 0;

-- The processor serves a partition's tenants round-robin and each tenant's rows in id order:
-- it walks the distinct pending tenants of a partition and takes a prefix of each one's rows.
DROP INDEX outbox_pending;
CREATE INDEX outbox_pending ON outbox (partition, tenant_id, id) WHERE status = 'pending';

-- Operators and the admin overview look at dead records per tenant.
CREATE INDEX outbox_dead ON outbox (tenant_id, id) WHERE status = 'dead';
