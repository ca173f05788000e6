-- The outbox's own identity. Progress records in Kafka name outbox ids, which mean something only in
-- the database that issued them; their key carries this identity, so a new owner of a partition acts
-- only on its own outbox's records (a database rebuilt after a disaster, or a second one publishing to
-- the same cluster with the same prefix, never marks rows sent that it did not publish).
--
-- It also records SLUICE_PARTITIONS, set by the first sluice that writes or publishes: rows are placed
-- by partition, and a process configured with another count would write rows no processor claims (or
-- claim none of them), so every later one must agree.
CREATE TABLE outbox_identity (
  singleton  boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
  id         uuid        NOT NULL DEFAULT gen_random_uuid(),
  partitions integer     CHECK (partitions > 0),
  created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO outbox_identity DEFAULT VALUES;
