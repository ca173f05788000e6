-- The outbox's own identity. Progress records in Kafka name outbox ids, which mean something only in
-- the database that issued them; their key carries this identity, so a new owner of a partition acts
-- only on its own outbox's records (a database rebuilt after a disaster, or a second one publishing to
-- the same cluster with the same prefix, never marks rows sent that it did not publish).
CREATE TABLE outbox_identity (
  singleton  boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
  id         uuid        NOT NULL DEFAULT gen_random_uuid(),
  created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO outbox_identity DEFAULT VALUES;
