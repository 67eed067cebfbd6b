-- Leases on outbox rows carry a token. Claim sets a fresh one with the lease;
-- completing or failing a row is conditional on it. Without it a worker
-- whose lease ran out while another took the row over could release or
-- complete its successor's lease (and let a third consumer repeat the
-- teardown). The token is kept after a release, so that a repeated
-- completion by the same holder is recognised as its own.
ALTER TABLE thread_delete.outbox ADD COLUMN IF NOT EXISTS lease_token uuid;
