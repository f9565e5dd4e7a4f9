-- 2 pm on a Tuesday: someone meant to log out one user, and forgot the WHERE.
-- Run it:   dbsandbox run examples/missing_where.sql
-- The guard stops at the DELETE (exit 3) and says what it would do. To let the mistake
-- happen anyway, add --yes; the ROLLBACK below then brings every session back.
CREATE TABLE login_sessions (id INTEGER PRIMARY KEY, user_name TEXT NOT NULL, started TEXT);
INSERT INTO login_sessions VALUES
  (1, 'ann', '13:02'), (2, 'bob', '13:15'), (3, 'cy', '13:40'), (4, 'dee', '13:58');

BEGIN;
DELETE FROM login_sessions;            -- meant: WHERE user_name = 'bob'
SELECT count(*) AS left_over FROM login_sessions;
ROLLBACK;                              -- not committed yet, so nothing is lost
SELECT count(*) AS after_rollback FROM login_sessions;
