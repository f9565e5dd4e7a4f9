-- A money transfer between two accounts, watched by a second session.
-- Run it:  dbsandbox run examples/transfer.sql
CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner TEXT NOT NULL, balance INTEGER NOT NULL);
INSERT INTO accounts VALUES (1, 'alice', 1000), (2, 'bob', 500);

BEGIN;
UPDATE accounts SET balance = balance - 200 WHERE id = 1;
UPDATE accounts SET balance = balance + 200 WHERE id = 2;

\session B
-- B cannot see A's uncommitted transfer yet...
SELECT owner, balance FROM accounts ORDER BY id;
-- ...and its own write must wait for A's lock.
UPDATE accounts SET balance = balance + 1 WHERE id = 2;

\session A
COMMIT;

\session B
SELECT owner, balance FROM accounts ORDER BY id;
