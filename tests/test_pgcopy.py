"""The logical copy of a live PostgreSQL database, against the real server.

Every test makes its own throwaway databases (dropped WITH (FORCE) afterwards) and proves the
copy by comparing what the catalogs and the tables say on both sides, never by trusting the
copier's own account of what it did.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest
from psycopg2.extensions import TRANSACTION_STATUS_IDLE

from sandbox.snapshots import pgcopy
from sandbox.snapshots.pgcopy import CopyStats, LockBusy, UnsupportedObject, copy_database
from sandbox.targets import quote_ident

pytestmark = pytest.mark.postgres

PREFIX = "dbsandbox_test_pgcopy_"
USER_SCHEMA = "left(n.nspname, 3) <> 'pg_' AND n.nspname <> 'information_schema'"

# Each query describes one kind of object by name and definition text (never by oid), read with
# search_path = pg_catalog so that every name comes out schema-qualified.
CATALOG = {
    "schemas": f"""
        SELECT n.nspname, obj_description(n.oid, 'pg_namespace') FROM pg_namespace n
        WHERE {USER_SCHEMA} ORDER BY 1""",
    "types": f"""
        SELECT format_type(t.oid, NULL), t.typtype, t.typnotnull, pg_get_expr(t.typdefaultbin, 0),
               format_type(t.typbasetype, t.typtypmod), t.typcollation::regcollation::text,
               ARRAY(SELECT e.enumlabel::text FROM pg_enum e WHERE e.enumtypid = t.oid
                     ORDER BY e.enumsortorder)
        FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE {USER_SCHEMA} ORDER BY 1""",
    "domain constraints": f"""
        SELECT format_type(co.contypid, NULL), co.conname, pg_get_constraintdef(co.oid),
               co.convalidated
        FROM pg_constraint co JOIN pg_type t ON t.oid = co.contypid
        JOIN pg_namespace n ON n.oid = t.typnamespace WHERE {USER_SCHEMA} ORDER BY 1, 2""",
    "functions": f"""
        SELECT p.oid::regprocedure::text, pg_get_functiondef(p.oid)
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE {USER_SCHEMA} ORDER BY 1""",
    "relations": f"""
        SELECT c.oid::regclass::text, c.relkind, c.relpersistence, c.reloptions,
               c.relispopulated, c.relreplident, obj_description(c.oid, 'pg_class')
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE {USER_SCHEMA} ORDER BY 1""",
    # attnum is left out: dropped columns leave gaps in the live table that a copy has not.
    "columns": f"""
        SELECT a.attrelid::regclass::text, a.attname, format_type(a.atttypid, a.atttypmod),
               a.attnotnull, a.attcollation::regcollation::text, pg_get_expr(d.adbin, d.adrelid),
               a.attidentity, a.attgenerated, a.attstorage, a.attstattarget,
               col_description(a.attrelid, a.attnum)
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE {USER_SCHEMA} AND a.attnum > 0 AND NOT a.attisdropped ORDER BY 1, a.attnum""",
    "sequences": f"""
        SELECT s.seqrelid::regclass::text, format_type(s.seqtypid, NULL), s.seqstart,
               s.seqincrement, s.seqmax, s.seqmin, s.seqcache, s.seqcycle
        FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {USER_SCHEMA} ORDER BY 1""",
    "sequence owners": f"""
        SELECT d.objid::regclass::text, d.refobjid::regclass::text, a.attname, d.deptype
        FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
        WHERE {USER_SCHEMA} AND c.relkind = 'S' AND d.classid = 'pg_class'::regclass
          AND d.refclassid = 'pg_class'::regclass ORDER BY 1""",
    "constraints": f"""
        SELECT co.conrelid::regclass::text, co.conname, co.contype, pg_get_constraintdef(co.oid),
               co.convalidated, co.conindid::regclass::text
        FROM pg_constraint co JOIN pg_class c ON c.oid = co.conrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {USER_SCHEMA} ORDER BY 1, 2""",
    "indexes": f"""
        SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid), i.indisunique,
               i.indisclustered, obj_description(i.indexrelid, 'pg_class')
        FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {USER_SCHEMA} ORDER BY 1""",
    "views": f"""
        SELECT c.oid::regclass::text, pg_get_viewdef(c.oid)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE {USER_SCHEMA} AND c.relkind IN ('v', 'm') ORDER BY 1""",
    "triggers": f"""
        SELECT tg.tgrelid::regclass::text, tg.tgname, pg_get_triggerdef(tg.oid), tg.tgenabled
        FROM pg_trigger tg JOIN pg_class c ON c.oid = tg.tgrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE {USER_SCHEMA} AND NOT tg.tgisinternal ORDER BY 1, 2""",
    # Described by pg_describe_object, which names the object (never its oid).
    "comments": """
        SELECT pg_describe_object(classoid, objoid, objsubid), description FROM pg_description
        WHERE objoid >= 16384 ORDER BY 1""",
    # Planner statistics are sampled, so only whether a table has them is compared.
    "analyzed": f"""
        SELECT c.oid::regclass::text, EXISTS (SELECT 1 FROM pg_stats s
               WHERE s.schemaname = n.nspname AND s.tablename = c.relname)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE {USER_SCHEMA} AND c.relkind IN ('r', 'm') ORDER BY 1""",
    "extended statistics": f"""
        SELECT pg_get_statisticsobjdef(s.oid) FROM pg_statistic_ext s
        JOIN pg_namespace n ON n.oid = s.stxnamespace WHERE {USER_SCHEMA} ORDER BY 1""",
}

RICH_SCHEMA = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
ALTER TYPE mood ADD VALUE 'meh' BEFORE 'ok';
CREATE DOMAIN money_amount AS numeric(12, 2) NOT NULL DEFAULT 0
    CONSTRAINT money_amount_not_negative CHECK (VALUE >= 0);
CREATE TYPE money_pair AS (amount numeric, currency text COLLATE "C");
CREATE SEQUENCE ref_seq AS integer START 100 INCREMENT 5 MAXVALUE 100000 CACHE 1;
CREATE FUNCTION next_ref() RETURNS text LANGUAGE plpgsql
    AS $$ BEGIN RETURN 'R-' || nextval('ref_seq'); END $$;
CREATE FUNCTION cents(amount numeric) RETURNS bigint LANGUAGE sql IMMUTABLE
    AS $$ SELECT (amount * 100)::bigint $$;
CREATE TABLE accounts (
    id serial PRIMARY KEY,
    code text NOT NULL DEFAULT next_ref() UNIQUE,
    owner text COLLATE "C" NOT NULL,
    balance money_amount,
    feeling mood DEFAULT 'ok',
    tags text[],
    profile jsonb,
    avatar bytea,
    opened_at timestamptz DEFAULT now(),
    born date,
    rate double precision,
    pair money_pair,
    balance_cents bigint GENERATED ALWAYS AS (cents(balance)) STORED,
    CONSTRAINT rate_not_negative CHECK (rate IS NULL OR rate >= 0)
) WITH (fillfactor = 80);
COMMENT ON TABLE accounts IS 'who has money';
COMMENT ON COLUMN accounts.owner IS 'the owner''s name, as they spell it';
CREATE INDEX accounts_lower_owner ON accounts (lower(owner));
CREATE TABLE transfers (
    id bigint GENERATED ALWAYS AS IDENTITY
        (START WITH 1000 INCREMENT BY 10 MINVALUE 1000 MAXVALUE 9999999 CACHE 5 CYCLE),
    from_id int REFERENCES accounts ON DELETE CASCADE,
    to_id int NOT NULL,
    note varchar(200),
    amount numeric(12, 2) NOT NULL CHECK (amount > 0),
    at timestamp DEFAULT '2024-01-01 00:00',
    PRIMARY KEY (id),
    CONSTRAINT transfers_to FOREIGN KEY (to_id) REFERENCES accounts (id) ON DELETE CASCADE
);
ALTER TABLE transfers DROP COLUMN note;
ALTER TABLE transfers ADD COLUMN memo text;
CREATE INDEX transfers_big ON transfers (amount) WHERE amount > 100;
CREATE TABLE audit_log (id bigserial PRIMARY KEY, what text NOT NULL);
CREATE FUNCTION log_transfer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.audit_log (what) VALUES (TG_OP || ' ' || NEW.id);
    RETURN NEW;
END $$;
CREATE TRIGGER transfers_audit AFTER INSERT ON transfers
    FOR EACH ROW EXECUTE FUNCTION log_transfer();
CREATE SCHEMA "Learner Space";
CREATE TABLE "Learner Space"."Odd Name" (
    "Key" int, "it's" text, n int DEFAULT 7, PRIMARY KEY ("Key", n)
);
COMMENT ON COLUMN "Learner Space"."Odd Name"."it's" IS 'a quote in a name';
CREATE UNLOGGED TABLE "Learner Space".scratch (x int GENERATED BY DEFAULT AS IDENTITY, y text);
CREATE VIEW rich AS SELECT id, owner, balance FROM accounts WHERE balance > 100;
CREATE VIEW "Learner Space".richest AS SELECT * FROM rich ORDER BY balance DESC LIMIT 1;
CREATE MATERIALIZED VIEW totals AS
    SELECT feeling, sum(balance) AS total, count(*) AS n FROM accounts GROUP BY feeling;
CREATE UNIQUE INDEX totals_feeling ON totals (feeling);
CREATE MATERIALIZED VIEW "Learner Space".later AS SELECT 1 AS one WITH NO DATA;
CREATE STATISTICS accounts_owner_feeling (ndistinct) ON owner, feeling FROM accounts;
CREATE VIEW poor WITH (security_barrier) AS
    SELECT * FROM accounts WHERE balance < 100 WITH LOCAL CHECK OPTION;
CREATE TRIGGER accounts_touch BEFORE UPDATE ON accounts
    FOR EACH ROW EXECUTE FUNCTION log_transfer();
ALTER TABLE accounts DISABLE TRIGGER accounts_touch;
ALTER TABLE accounts ALTER COLUMN profile SET STORAGE EXTERNAL,
    ALTER COLUMN owner SET STATISTICS 500, CLUSTER ON accounts_pkey;
ALTER TABLE "Learner Space"."Odd Name" REPLICA IDENTITY FULL;
COMMENT ON SCHEMA "Learner Space" IS 'the learner''s own';
COMMENT ON FUNCTION cents(numeric) IS 'to cents';
COMMENT ON INDEX transfers_big IS 'the big ones';
COMMENT ON CONSTRAINT rate_not_negative ON accounts IS 'no negative rates';
COMMENT ON TYPE mood IS 'how it feels';
"""

# Constraints added NOT VALID over rows that break them: the copy must not validate them.
RICH_LATE_CONSTRAINTS = """
ALTER TABLE "Learner Space"."Odd Name" ADD CONSTRAINT small_n CHECK (n < 5) NOT VALID;
ALTER DOMAIN money_amount ADD CONSTRAINT money_amount_small CHECK (VALUE < 400) NOT VALID;
"""

RICH_DATA = r"""
INSERT INTO accounts (owner, balance, feeling, tags, profile, avatar, opened_at, born, rate, pair)
VALUES
    ('Ines', 500.25, 'happy', ARRAY['a', NULL, 'c"d'], '{"k": [1, 2.5, null], "s": "é"}',
     '\x00ff10'::bytea, '2024-03-01 12:34:56.789+02', '1990-02-28', 0.1, ROW(1.5, 'EUR')),
    ('Kofi', 300, 'meh', '{}', 'null', '', '2024-03-02 00:00:00+00', NULL, 1e-300, NULL),
    ('Ana', 0, NULL, NULL, NULL, NULL, NULL, '4713-01-01 BC', NULL, ROW(NULL, NULL)),
    (E'tab\there, newline\nthere, back\\slash', 42, 'sad', ARRAY['x'], '[]', '\\x',
     'infinity', 'infinity', 'NaN', ROW(-0.0, ''));
INSERT INTO transfers (from_id, to_id, amount, memo)
SELECT 1 + g % 4, 1 + (g + 1) % 4, g * 7.5, CASE WHEN g % 3 = 0 THEN NULL ELSE 'm' || g END
FROM generate_series(1, 40) g;
INSERT INTO "Learner Space"."Odd Name" VALUES (1, 'it''s', 1), (1, NULL, 2), (2, '', 7);
INSERT INTO "Learner Space".scratch (y) VALUES ('u1'), ('u2');
SELECT setval('ref_seq', 500, false);
REFRESH MATERIALIZED VIEW totals;
ANALYZE accounts;
ANALYZE totals;
"""


class Server:
    """Throwaway databases on the test server, all dropped at the end of the test."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.databases: list[str] = []
        self.connections: list[Any] = []

    def create(self, template: str = "template1") -> str:
        name = f"{PREFIX}{secrets.token_hex(6)}"
        self.databases.append(name)
        self.execute(None, f"CREATE DATABASE {quote_ident(name)} TEMPLATE {quote_ident(template)}")
        return name

    def connect(self, database: str | None) -> Any:
        extra = {"dbname": database} if database else {}
        connection = psycopg2.connect(self.url, connect_timeout=5, **extra)
        connection.autocommit = True
        self.connections.append(connection)
        return connection

    def execute(self, database: str | None, sql: str) -> list[tuple[Any, ...]]:
        connection = self.connect(database)
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql)
                return cursor.fetchall() if cursor.description else []
        finally:
            connection.close()

    def close(self) -> None:
        for connection in self.connections:
            connection.close()
        failures = []
        for name in self.databases:  # every one is tried, so one failure leaks nothing else
            try:
                self.execute(None, f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
            except psycopg2.Error as exc:
                failures.append(f"{name}: {exc}")
        assert not failures, f"could not drop test databases: {failures}"


@pytest.fixture
def server(postgres_url: str) -> Iterator[Server]:
    opened = Server(postgres_url)
    try:
        yield opened
    finally:
        opened.close()


def live_database(server: Server, *scripts: str) -> str:
    """A database made from template1, as a sandbox's is; each script is its own transaction."""
    name = server.create()
    for script in scripts:
        server.execute(name, script)
    return name


def copy(server: Server, live: str, **options: int) -> tuple[str, CopyStats]:
    """Copy `live` into a fresh database made as the snapshot store makes one."""
    snapshot = server.create("template0")
    source, target = server.connect(live), server.connect(snapshot)
    try:
        return snapshot, copy_database(source, target, **options)
    finally:
        # Success or failure, both connections are handed back as they came: idle, autocommit.
        for connection in (source, target):
            assert connection.autocommit
            assert connection.get_transaction_status() == TRANSACTION_STATUS_IDLE
            connection.close()


def catalog(server: Server, database: str) -> dict[str, list[tuple[Any, ...]]]:
    connection = server.connect(database)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SET search_path = pg_catalog")
            described = {}
            for kind, query in CATALOG.items():
                cursor.execute(query)
                described[kind] = cursor.fetchall()
            return described
    finally:
        connection.close()


def relations(server: Server, database: str, kinds: str = "rm") -> list[str]:
    kind_list = ", ".join(f"'{kind}'" for kind in kinds)
    rows = server.execute(
        database,
        f"""SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE {USER_SCHEMA} AND c.relkind IN ({kind_list}) ORDER BY 1""",
    )
    return [row[0] for row in rows]


def contents(server: Server, database: str) -> dict[str, list[str]]:
    """Every table's and materialized view's rows as PostgreSQL prints them, sorted.

    Text, not Python values: it is exact for every type (floats print shortest-exact), and
    Python cannot hold some of the values the rich schema stores (dates BC, infinity).
    """
    return {
        name: [
            row[0]
            for row in server.execute(database, f"SELECT _r::text FROM {name} AS _r ORDER BY 1")
        ]
        for name in relations(server, database)
        if name != '"Learner Space".later'  # never populated: it cannot be read
    }


def sequence_states(server: Server, database: str) -> dict[str, tuple[Any, ...]]:
    return {
        name: server.execute(database, f"SELECT last_value, is_called FROM {name}")[0]
        for name in relations(server, database, "S")
    }


@pytest.fixture
def rich(server: Server) -> tuple[str, str, CopyStats]:
    live = live_database(server, RICH_SCHEMA, RICH_DATA, RICH_LATE_CONSTRAINTS)
    snapshot, stats = copy(server, live)
    return live, snapshot, stats


def test_the_copy_has_the_same_definitions(
    server: Server, rich: tuple[str, str, CopyStats]
) -> None:
    live, snapshot, _ = rich
    before, after = catalog(server, live), catalog(server, snapshot)
    # The comparison proves something only if the rich schema really is in the catalogs.
    assert len(before["functions"]) == 3
    assert len(before["triggers"]) == 2
    assert len(before["views"]) == 5
    assert len(before["comments"]) == 8
    assert ("public.accounts", True) in before["analyzed"]
    assert ("public.transfers", False) in before["analyzed"]
    assert '"Learner Space"."Odd Name"' in {row[0] for row in before["relations"]}
    for kind in CATALOG:
        assert after[kind] == before[kind], kind


def test_the_copy_has_the_same_rows_and_sequences(
    server: Server, rich: tuple[str, str, CopyStats]
) -> None:
    live, snapshot, stats = rich
    before = contents(server, live)
    assert contents(server, snapshot) == before
    assert len(before["public.transfers"]) == 40
    assert before["public.totals"], "the populated materialized view is compared with rows"
    assert sequence_states(server, snapshot) == sequence_states(server, live)
    for sequence in relations(server, live, "S"):
        next_value = f"SELECT nextval('{sequence}')"
        assert server.execute(snapshot, next_value) == server.execute(live, next_value)
    tables = relations(server, live, "r")
    assert stats.tables == len(tables)
    assert stats.rows == sum(len(before[table]) for table in tables)
    assert stats.bytes > 0
    assert stats.elapsed_ms > 0


def test_triggers_do_not_fire_during_the_load(
    server: Server, rich: tuple[str, str, CopyStats]
) -> None:
    live, snapshot, _ = rich
    count = "SELECT count(*) FROM audit_log"
    assert server.execute(live, count) == [(40,)]
    assert server.execute(snapshot, count) == [(40,)]
    # ... and they are there: the next transfer is audited.
    server.execute(snapshot, "INSERT INTO transfers (from_id, to_id, amount) VALUES (1, 2, 1)")
    assert server.execute(snapshot, count) == [(41,)]


def test_the_copy_works_as_a_template(server: Server, rich: tuple[str, str, CopyStats]) -> None:
    live, snapshot, _ = rich
    restored = server.create(snapshot)
    assert contents(server, restored) == contents(server, live)
    assert catalog(server, restored) == catalog(server, live)
    # Defaults that call user functions and sequences work in the restored database.
    server.execute(restored, "INSERT INTO accounts (owner) VALUES ('Zoe')")
    assert server.execute(restored, "SELECT code, balance FROM accounts WHERE owner = 'Zoe'") == [
        ("R-500", 0)
    ]


# Names that need quoting (and hold % and quotes), values of many types, and objects whose
# dependencies the copy must respect: a function taking a table's row type used by another
# table's default, a BEGIN ATOMIC body (parsed at creation), a CHECK calling a function that
# reads a table without naming its schema, and a view and a default made to depend on objects
# created after them (so creation order is not dependency order).
AWKWARD_SCHEMA = r'''
CREATE SCHEMA other;
CREATE SCHEMA "we'ird ""sch""";
CREATE TABLE "we'ird ""sch"""."100% ta""ble" ("c%1" text, "Ünï" int);
COMMENT ON TABLE "we'ird ""sch"""."100% ta""ble" IS '100% \ o''clock';
CREATE TABLE nocols ();
CREATE TABLE base_items (id int PRIMARY KEY, price numeric);
CREATE FUNCTION total_price() RETURNS numeric LANGUAGE sql
    BEGIN ATOMIC SELECT sum(price) FROM base_items; END;
CREATE FUNCTION describe(b base_items) RETURNS text LANGUAGE sql IMMUTABLE
    AS $$ SELECT 'item ' || b.id $$;
CREATE FUNCTION max_price() RETURNS numeric LANGUAGE plpgsql STABLE
    AS $$ BEGIN RETURN (SELECT coalesce(max(price), 0) FROM base_items); END $$;
CREATE TABLE uses_describe (b_id int, label text DEFAULT describe(ROW(0, 0)::base_items));
CREATE TYPE color AS ENUM ('red', 'green');
CREATE DOMAIN warm AS color CHECK (VALUE = 'red');
CREATE TYPE pt AS (x int, c color);
CREATE TABLE orders (
    id int GENERATED BY DEFAULT AS IDENTITY, colors color[], w warm, pts pt[], span int4range,
    ip inet, u uuid, iv interval, m money, tsv tsvector, p point, c char(3) COLLATE "C",
    ts timestamp(3), amount numeric CHECK (amount <= max_price() * 10)
);
CREATE SEQUENCE other.s2 AS smallint;
CREATE UNLOGGED SEQUENCE s3 INCREMENT -1;
CREATE TABLE other.t2 (id int DEFAULT nextval('other.s2'));
ALTER SEQUENCE other.s2 OWNED BY other.t2.id;
CREATE VIEW v_def AS SELECT * FROM base_items;
ALTER VIEW v_def ALTER COLUMN price SET DEFAULT 99;
CREATE FUNCTION v_ins() RETURNS trigger LANGUAGE plpgsql
    AS $$ BEGIN INSERT INTO base_items VALUES (NEW.id, NEW.price); RETURN NEW; END $$;
CREATE VIEW v_complex AS SELECT b.id, b.price, describe(b) AS d FROM base_items b;
CREATE TRIGGER v_complex_ins INSTEAD OF INSERT ON v_complex
    FOR EACH ROW EXECUTE FUNCTION v_ins();
CREATE INDEX ON base_items ((price * 2)) WITH (fillfactor = 50);
CREATE VIEW v_early AS SELECT 1 AS id;
CREATE TABLE early (id int);
CREATE FUNCTION later_fn() RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT 7 $$;
ALTER TABLE early ALTER COLUMN id SET DEFAULT later_fn();
CREATE OR REPLACE VIEW v_early AS SELECT id FROM early;
'''

AWKWARD_DATA = r'''
INSERT INTO "we'ird ""sch"""."100% ta""ble" VALUES ('50%', 1), (NULL, NULL), (E'\N', 2);
INSERT INTO nocols DEFAULT VALUES;
INSERT INTO nocols DEFAULT VALUES;
INSERT INTO early DEFAULT VALUES;
INSERT INTO base_items VALUES (1, 10), (2, 20);
INSERT INTO uses_describe (b_id) VALUES (1);
INSERT INTO orders (colors, w, pts, span, ip, u, iv, m, tsv, p, c, ts, amount) VALUES
    ('{red,green}', 'red', ARRAY[ROW(1, 'red')::pt, ROW(NULL, NULL)::pt], '[1,5)',
     '10.0.0.1/8', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '1 year 2 mons 3 days 04:05:06.789',
     12.34, 'a fat cat', '(1,2)', 'ab', '2024-01-01 01:02:03.456', 5);
SELECT nextval('s3'), nextval('s3'), nextval('other.s2');
'''


def test_awkward_names_types_and_dependency_order_survive_the_copy(server: Server) -> None:
    live = live_database(server, AWKWARD_SCHEMA, AWKWARD_DATA)
    snapshot, _ = copy(server, live)
    assert catalog(server, snapshot) == catalog(server, live)
    rows = contents(server, live)
    assert rows["public.nocols"] == ["()", "()"]
    assert contents(server, snapshot) == rows
    assert sequence_states(server, snapshot) == sequence_states(server, live)
    assert server.execute(snapshot, "SELECT total_price(), label FROM uses_describe") == [
        (30, "item 0")
    ]


def test_a_database_without_public_gets_a_copy_without_public(server: Server) -> None:
    live = live_database(
        server,
        "DROP SCHEMA public; CREATE SCHEMA app; CREATE TABLE app.t (x int); "
        "INSERT INTO app.t VALUES (1)",
    )
    snapshot, _ = copy(server, live)
    assert catalog(server, snapshot)["schemas"] == [("app", None)]
    assert contents(server, snapshot) == {"app.t": ["(1)"]}


UNSUPPORTED = {
    "policy": (
        "CREATE TABLE notes (owner text); ALTER TABLE notes ENABLE ROW LEVEL SECURITY; "
        "CREATE POLICY own_notes ON notes USING (owner = current_user)",
        "row level security policy own_notes on table notes",
    ),
    "rule": (
        "CREATE TABLE notes (id int); "
        "CREATE RULE keep_notes AS ON DELETE TO notes DO INSTEAD NOTHING",
        "rule keep_notes on notes",
    ),
    "partitions": (
        "CREATE SCHEMA s; CREATE TABLE s.events (at date) PARTITION BY RANGE (at)",
        "partitioned table s.events",
    ),
    "inheritance": (
        'CREATE TABLE base (id int); CREATE TABLE "Child" (extra int) INHERITS (base)',
        'table "Child" inherits from base',
    ),
    # What hangs on a partitioned or foreign table (a constraint, a trigger, a sequence it
    # owns) is no object of a table the copy makes: the table is refused before it is read.
    "partitions with a primary key": (
        "CREATE TABLE p (a int PRIMARY KEY) PARTITION BY LIST (a); "
        "CREATE TABLE p1 PARTITION OF p FOR VALUES IN (1); INSERT INTO p VALUES (1)",
        "partitioned table p; partition p1",
    ),
    "sub-partitions with a check": (
        "CREATE TABLE p (a int CHECK (a > 0), b int) PARTITION BY LIST (a); "
        "CREATE TABLE p1 PARTITION OF p FOR VALUES IN (1) PARTITION BY LIST (b); "
        "CREATE TABLE p11 PARTITION OF p1 FOR VALUES IN (1)",
        "partitioned table p; partitioned table p1; partition p11",
    ),
    "a foreign key to partitions": (
        "CREATE TABLE p (a int PRIMARY KEY) PARTITION BY LIST (a); "
        "CREATE TABLE p1 PARTITION OF p FOR VALUES IN (1); CREATE TABLE r (a int REFERENCES p)",
        "partitioned table p; partition p1",
    ),
    "a serial column of a partitioned table": (
        "CREATE TABLE p (id serial, a int) PARTITION BY LIST (a)",
        "partitioned table p",
    ),
    "a trigger on a partitioned table": (
        "CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$; "
        "CREATE TABLE p (a int) PARTITION BY LIST (a); "
        "CREATE TRIGGER t BEFORE INSERT ON p FOR EACH ROW EXECUTE FUNCTION f()",
        "partitioned table p",
    ),
    "a foreign table with a check": (
        "CREATE FOREIGN DATA WRAPPER w; CREATE SERVER srv FOREIGN DATA WRAPPER w; "
        "CREATE FOREIGN TABLE ft (x int CHECK (x > 0)) SERVER srv",
        "foreign table ft",
    ),
    "grant": (
        "CREATE TABLE notes (id int); GRANT SELECT ON notes TO PUBLIC",
        "privileges granted on table notes",
    ),
    "aggregate": (
        "CREATE AGGREGATE total(int) (SFUNC = int4pl, STYPE = int)",
        "aggregate total(integer)",
    ),
    "event trigger": (
        "CREATE FUNCTION stop() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN END $$; "
        "CREATE EVENT TRIGGER no_ddl ON ddl_command_start EXECUTE FUNCTION stop()",
        "event trigger no_ddl",
    ),
}


@pytest.mark.parametrize("kind", sorted(UNSUPPORTED))
def test_what_cannot_be_copied_is_refused_before_anything_is_written(
    server: Server, kind: str
) -> None:
    schema_sql, named = UNSUPPORTED[kind]
    live = live_database(server, "CREATE TABLE fine (id int PRIMARY KEY);" + schema_sql)
    empty = catalog(server, server.create("template0"))
    with pytest.raises(UnsupportedObject, match=re.escape(named)):
        copy(server, live)
    snapshot = server.databases[-1]
    assert catalog(server, snapshot) == empty


# Shapes the refusals name before planning, and what the planners would meet if they did not.
PAST_THE_REFUSALS = {
    "a primary key": (
        "CREATE TABLE p (a int PRIMARY KEY) PARTITION BY LIST (a); "
        "CREATE TABLE p1 PARTITION OF p FOR VALUES IN (1)",
        "constraint p_pkey belongs to partitioned table p, which the copy does not make",
    ),
    "a serial column": (
        "CREATE TABLE p (id serial, a int) PARTITION BY LIST (a)",
        "sequence p_id_seq belongs to partitioned table p, which the copy does not make",
    ),
    "a trigger": (
        "CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$; "
        "CREATE TABLE p (a int) PARTITION BY LIST (a); "
        "CREATE TRIGGER t BEFORE INSERT ON p FOR EACH ROW EXECUTE FUNCTION f()",
        "trigger t belongs to partitioned table p, which the copy does not make",
    ),
    "a check on a foreign table": (
        "CREATE FOREIGN DATA WRAPPER w; CREATE SERVER srv FOREIGN DATA WRAPPER w; "
        "CREATE FOREIGN TABLE ft (x int CONSTRAINT positive CHECK (x > 0)) SERVER srv",
        "constraint positive belongs to foreign table ft, which the copy does not make",
    ),
    # As a partition's identity column looks from PostgreSQL 17: no sequence of its own.
    "an identity column without its sequence": (
        "CREATE TABLE t (id int GENERATED ALWAYS AS IDENTITY); "
        "DELETE FROM pg_depend WHERE objid = 't_id_seq'::regclass AND deptype = 'i'",
        "identity column id of table t has no sequence",
    ),
}


@pytest.mark.parametrize("shape", sorted(PAST_THE_REFUSALS))
def test_a_shape_no_refusal_foresaw_is_still_refused_by_name(
    server: Server, monkeypatch: pytest.MonkeyPatch, shape: str
) -> None:
    """The planners never assume: with the refusal queries gone, what they cannot place is
    refused by name (never a KeyError, never quietly left out)."""
    monkeypatch.setattr(pgcopy, "_REFUSALS", ())
    schema_sql, named = PAST_THE_REFUSALS[shape]
    live = live_database(server, schema_sql)
    with pytest.raises(UnsupportedObject, match=re.escape(named)):
        copy(server, live)
    assert catalog(server, server.databases[-1])["relations"] == []


def test_a_stale_materialized_view_is_refused(server: Server) -> None:
    live = live_database(
        server,
        "CREATE TABLE t (x int); INSERT INTO t VALUES (1); "
        "CREATE MATERIALIZED VIEW total AS SELECT sum(x) AS s FROM t",
        "INSERT INTO t VALUES (2)",  # total still says 1: a refresh in the copy would say 3
    )
    with pytest.raises(UnsupportedObject, match="materialized view total holds rows"):
        copy(server, live)
    assert catalog(server, server.databases[-1])["relations"] == []
    server.execute(live, "REFRESH MATERIALIZED VIEW total")
    snapshot, _ = copy(server, live)
    assert contents(server, snapshot)["public.total"] == ["(3)"]


def test_an_object_the_target_refuses_fails_the_whole_copy_naming_it(server: Server) -> None:
    live = live_database(
        server,
        "CREATE FUNCTION ok(x int) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$ SELECT true $$; "
        "CREATE TABLE t (x int CONSTRAINT x_ok CHECK (ok(x))); INSERT INTO t VALUES (1)",
        # The stored row was checked by the old body; checking it again would now fail.
        "CREATE OR REPLACE FUNCTION ok(x int) RETURNS boolean LANGUAGE sql IMMUTABLE "
        "AS $$ SELECT x > 1 $$",
    )
    with pytest.raises(UnsupportedObject, match="constraint x_ok on table t could not be"):
        copy(server, live)
    assert catalog(server, server.databases[-1])["relations"] == []


def test_an_extension_the_empty_database_lacks_is_refused(server: Server) -> None:
    available = server.execute(None, "SELECT 1 FROM pg_available_extensions WHERE name = 'seg'")
    if not available:
        pytest.skip("the server has no contrib extension 'seg' to try with")
    live = live_database(server, "CREATE EXTENSION seg; CREATE TABLE t (r seg)")
    with pytest.raises(UnsupportedObject, match="extension seg"):
        copy(server, live)


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("change", "locked"),
    [
        ("ALTER TABLE accounts ADD COLUMN x int", "table accounts"),
        ("TRUNCATE accounts", "table accounts"),
        ("DROP TABLE accounts CASCADE", "table accounts"),
        ("CREATE OR REPLACE VIEW rich AS SELECT id + 1 AS id FROM accounts", "view rich"),
        ("REFRESH MATERIALIZED VIEW total", "materialized view total"),
        ("DROP SEQUENCE counter", "sequence counter"),
    ],
)
def test_an_uncommitted_change_holding_a_lock_makes_the_copy_fail_fast(
    server: Server, change: str, locked: str
) -> None:
    live = live_database(
        server,
        "CREATE TABLE accounts (id int PRIMARY KEY); INSERT INTO accounts VALUES (1); "
        "CREATE VIEW rich AS SELECT id FROM accounts; CREATE SEQUENCE counter; "
        "CREATE MATERIALIZED VIEW total AS SELECT count(*) AS n FROM accounts",
    )
    learner = server.connect(live)
    with learner.cursor() as cursor:
        cursor.execute("BEGIN")
        cursor.execute(change)
    with pytest.raises(LockBusy, match=f"{locked} is locked by an uncommitted change") as raised:
        copy(server, live, lock_timeout_ms=300)
    assert str(learner.get_backend_pid()) in str(raised.value)
    # Once the learner ends the transaction, the copy goes through.
    with learner.cursor() as cursor:
        cursor.execute("ROLLBACK")
    snapshot, _ = copy(server, live, lock_timeout_ms=300)
    assert contents(server, snapshot) == {"public.accounts": ["(1)"], "public.total": ["(1)"]}


def test_uncommitted_changes_of_other_sessions_are_not_in_the_copy(server: Server) -> None:
    live = live_database(
        server,
        "CREATE TABLE notes (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text); "
        "INSERT INTO notes (body) VALUES ('one'), ('two')",
    )
    learner = server.connect(live)
    with learner.cursor() as cursor:
        cursor.execute("BEGIN")
        cursor.execute("INSERT INTO notes (body) VALUES ('uncommitted')")
        cursor.execute("UPDATE notes SET body = 'changed' WHERE id = 1")
    snapshot, _ = copy(server, live)
    with learner.cursor() as cursor:
        cursor.execute("COMMIT")
    assert contents(server, snapshot) == {"public.notes": ["(1,one)", "(2,two)"]}
    assert len(contents(server, live)["public.notes"]) == 3
    # The uncommitted insert took id 3; the copy never hands it out again.
    assert server.execute(snapshot, "SELECT nextval('notes_id_seq')") == [(4,)]
