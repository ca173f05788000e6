-- Sent rows per tenant, kept as rows change, so the admin overview never counts the sent rows the
-- dedupe window keeps (millions): pending and dead are counted from their partial indexes, sent from
-- here. Statement-level triggers see each statement's rows once (a batch of 500 marks is one upsert
-- per tenant), in tenant order so two statements never lock the same counters in opposite orders.
CREATE TABLE outbox_sent_counts (
  tenant_id text   PRIMARY KEY,
  sent      bigint NOT NULL
);

CREATE FUNCTION outbox_count_sent() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    DELETE FROM outbox_sent_counts;
    RETURN NULL;
  END IF;
  -- plpgsql plans a statement when it first runs, so each branch names only the transition tables
  -- its event has.
  IF TG_OP = 'INSERT' THEN
    INSERT INTO outbox_sent_counts (tenant_id, sent)
      SELECT tenant_id, count(*) FROM new_rows WHERE status = 'sent' GROUP BY tenant_id ORDER BY tenant_id
      ON CONFLICT (tenant_id) DO UPDATE SET sent = outbox_sent_counts.sent + excluded.sent;
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO outbox_sent_counts (tenant_id, sent)
      SELECT tenant_id, -count(*) FROM old_rows WHERE status = 'sent' GROUP BY tenant_id ORDER BY tenant_id
      ON CONFLICT (tenant_id) DO UPDATE SET sent = outbox_sent_counts.sent + excluded.sent;
  ELSE
    INSERT INTO outbox_sent_counts (tenant_id, sent)
      SELECT tenant_id, sum(d) FROM (
        SELECT tenant_id, 1 AS d FROM new_rows WHERE status = 'sent'
        UNION ALL
        SELECT tenant_id, -1 FROM old_rows WHERE status = 'sent'
      ) AS changed
      GROUP BY tenant_id HAVING sum(d) <> 0 ORDER BY tenant_id
      ON CONFLICT (tenant_id) DO UPDATE SET sent = outbox_sent_counts.sent + excluded.sent;
  END IF;
  RETURN NULL;
END $$;

-- A table can carry transition tables for one event per trigger only.
CREATE TRIGGER outbox_sent_counts_insert AFTER INSERT ON outbox
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION outbox_count_sent();
CREATE TRIGGER outbox_sent_counts_update AFTER UPDATE ON outbox
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION outbox_count_sent();
CREATE TRIGGER outbox_sent_counts_delete AFTER DELETE ON outbox
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION outbox_count_sent();
CREATE TRIGGER outbox_sent_counts_truncate AFTER TRUNCATE ON outbox
  FOR EACH STATEMENT EXECUTE FUNCTION outbox_count_sent();

-- The rows already there, counted once. Creating the triggers locked the table against writes until
-- this migration commits, so no change slips between this count and the triggers.
INSERT INTO outbox_sent_counts (tenant_id, sent)
  SELECT tenant_id, count(*) FROM outbox WHERE status = 'sent' GROUP BY tenant_id;
