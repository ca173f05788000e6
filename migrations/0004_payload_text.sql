-- The payload is kept as the exact text the client sent: jsonb would reorder keys, normalise numbers
-- (1e400, 2^53+1) and refuse what it cannot hold (\u0000, deep nesting), and Kafka's record value
-- must be the client's bytes. New rows fill payload_text only; rows written before keep their jsonb.
ALTER TABLE outbox ADD COLUMN payload_text text;
ALTER TABLE outbox ALTER COLUMN payload DROP NOT NULL;
