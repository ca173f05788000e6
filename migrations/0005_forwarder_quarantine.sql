-- Journal lines the outbox refuses for good (a value Postgres cannot hold, say): the forwarder
-- records where each one is and why, and goes on. The line itself stays in the journal segment.
CREATE TABLE forwarder_quarantine (
  node_id        text        NOT NULL,
  segment        text        NOT NULL,
  seq            bigint      NOT NULL,
  tenant_id      text,
  dedupe_key     text,
  error          text        NOT NULL,
  quarantined_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (node_id, seq)
);
