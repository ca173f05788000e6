-- The transactional outbox: one row per accepted write, unique per tenant and dedupe key.
CREATE TABLE outbox (
  id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  tenant_id     text        NOT NULL,
  dedupe_key    text        NOT NULL,
  partition     integer     NOT NULL,
  topic         text        NOT NULL,
  payload       jsonb       NOT NULL,
  headers       jsonb       NOT NULL DEFAULT '{}'::jsonb,
  request_id    text,
  traceparent   text,
  ingested_at   timestamptz NOT NULL,
  status        text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'dead')),
  attempts      integer     NOT NULL DEFAULT 0,
  last_error    text,
  created_at    timestamptz NOT NULL DEFAULT now(),
  available_at  timestamptz NOT NULL DEFAULT now(),
  sent_at       timestamptz,
  -- The inserting transaction: ids can commit out of order, so the processor only claims rows whose
  -- transaction is older than every transaction still running (see the claim query).
  xid           xid8        NOT NULL DEFAULT pg_current_xact_id(),
  CONSTRAINT outbox_tenant_dedupe UNIQUE (tenant_id, dedupe_key)
);

-- Claims scan only pending rows, per partition in id order.
CREATE INDEX outbox_pending ON outbox (partition, id) WHERE status = 'pending';
-- Retention deletes sent rows by age.
CREATE INDEX outbox_sent_at ON outbox (sent_at) WHERE status = 'sent';
