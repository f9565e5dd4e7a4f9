-- PostgreSQL: after an error, a transaction refuses everything until ROLLBACK,
-- and COMMIT answers ROLLBACK. Run it:
--   dbsandbox run examples/aborted_transaction.sql --engine postgres --url postgresql://postgres@127.0.0.1/postgres
-- On SQLite the same script shows the other behaviour: only the failed statement is undone.
CREATE TABLE orders (id INTEGER PRIMARY KEY, total INTEGER NOT NULL CHECK (total >= 0));
BEGIN;
INSERT INTO orders VALUES (1, 50);
INSERT INTO orders VALUES (2, -5);   -- violates the CHECK constraint
INSERT INTO orders VALUES (3, 70);
COMMIT;
SELECT count(*) AS saved FROM orders;
