"""Tests for the lexical statement splitter in ``sandbox.statements``."""

from __future__ import annotations

import re
import sqlite3
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandbox import statements
from sandbox.statements import (
    Dialect,
    MetaCommand,
    Statement,
    Token,
    _lex,
    split,
    split_lexed,
    split_statements,
    tokens,
    words,
)

DIALECTS: tuple[Dialect, ...] = ("sqlite", "postgres")


def texts(sql: str, dialect: Dialect = "sqlite") -> list[str]:
    return [s.text for s in split_statements(sql, dialect)]


def naive_position(sql: str, offset: int) -> tuple[int, int]:
    """Reference (line, column) computed the slow, obvious way."""
    prefix = sql[:offset].replace("\r\n", "\n").replace("\r", "\n")
    return prefix.count("\n") + 1, len(prefix) - prefix.rfind("\n")


# --- strings, identifiers, comments ------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
def test_semicolons_inside_strings_do_not_split(dialect: Dialect) -> None:
    sql = "INSERT INTO t VALUES ('a;b', 'it''s; ok'); SELECT 2"
    assert texts(sql, dialect) == ["INSERT INTO t VALUES ('a;b', 'it''s; ok')", "SELECT 2"]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_backslash_is_not_an_escape_in_standard_strings(dialect: Dialect) -> None:
    assert texts("SELECT 'a\\'; SELECT 2", dialect) == ["SELECT 'a\\'", "SELECT 2"]


@pytest.mark.parametrize("prefix", ["E", "e"])
def test_postgres_escape_strings_honour_backslash(prefix: str) -> None:
    sql = f"SELECT {prefix}'it\\'s; fine'; SELECT 2"
    assert texts(sql, "postgres") == [f"SELECT {prefix}'it\\'s; fine'", "SELECT 2"]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_hex_and_bit_string_prefixes(dialect: Dialect) -> None:
    sql = "SELECT X'3b', B'1;0', x';'; SELECT 2"
    assert texts(sql, dialect) == ["SELECT X'3b', B'1;0', x';'", "SELECT 2"]
    assert [t.kind for t in tokens("X'3b'", dialect)] == ["string"]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_double_quoted_identifiers(dialect: Dialect) -> None:
    sql = 'SELECT "we;ird ""name""" FROM t; SELECT 2'
    assert texts(sql, dialect) == ['SELECT "we;ird ""name""" FROM t', "SELECT 2"]


def test_sqlite_backtick_and_bracket_identifiers() -> None:
    sql = "SELECT `a;b`, [c;d] FROM t; SELECT 2"
    assert texts(sql) == ["SELECT `a;b`, [c;d] FROM t", "SELECT 2"]
    kinds = [t.kind for t in tokens("`a;b` [c;d]")]
    assert kinds == ["quoted_identifier", "quoted_identifier"]


def test_postgres_brackets_and_backticks_are_punctuation() -> None:
    assert texts("SELECT arr[1] FROM t; SELECT 2", "postgres") == [
        "SELECT arr[1] FROM t",
        "SELECT 2",
    ]
    assert texts("SELECT [a;b]", "postgres") == ["SELECT [a", "b]"]
    assert texts("SELECT `a;b`", "postgres") == ["SELECT `a", "b`"]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_line_and_block_comments_hide_semicolons(dialect: Dialect) -> None:
    sql = "SELECT 1 -- no; split\n + 2 /* nor; here */ ; SELECT 3"
    # Comments inside are kept, a comment after the last code character is not.
    assert texts(sql, dialect) == ["SELECT 1 -- no; split\n + 2", "SELECT 3"]


def test_block_comments_nest_only_in_postgres() -> None:
    sql = "/* a /* b */ SELECT 1; */ SELECT 2;"
    assert texts(sql, "postgres") == ["SELECT 2"]
    assert texts(sql, "sqlite") == ["SELECT 1", "*/ SELECT 2"]


# --- PostgreSQL dollar quoting and parameters --------------------------------------------


def test_postgres_do_block_with_dollar_quotes() -> None:
    sql = "DO $$\nBEGIN\n  RAISE NOTICE 'x;';\n  PERFORM 1;\nEND\n$$;\nSELECT 1;"
    assert texts(sql, "postgres") == [
        "DO $$\nBEGIN\n  RAISE NOTICE 'x;';\n  PERFORM 1;\nEND\n$$",
        "SELECT 1",
    ]


def test_postgres_plpgsql_function_with_tagged_dollar_body() -> None:
    body = (
        "CREATE OR REPLACE FUNCTION bump() RETURNS trigger AS $body$\n"
        "BEGIN\n"
        "  NEW.n := NEW.n + 1; -- count it; twice\n"
        "  EXECUTE $$SELECT 1; SELECT 2$$;\n"
        "  RETURN NEW;\n"
        "END;\n"
        "$body$ LANGUAGE plpgsql"
    )
    assert texts(body + ";\nSELECT 1;", "postgres") == [body, "SELECT 1"]
    assert [t.kind for t in tokens("$body$ x; $$ y $body$", "postgres")] == ["dollar_string"]


def test_postgres_positional_parameters_are_not_dollar_quotes() -> None:
    sql = "SELECT $1; SELECT $2::int"
    assert texts(sql, "postgres") == ["SELECT $1", "SELECT $2::int"]
    assert [(t.kind, t.text) for t in tokens("$1 + $23", "postgres")] == [
        ("parameter", "$1"),
        ("punct", "+"),
        ("parameter", "$23"),
    ]


def test_dollar_in_identifier_is_not_a_quote() -> None:
    assert texts("SELECT a$b$c; SELECT 2", "postgres") == ["SELECT a$b$c", "SELECT 2"]


def test_sqlite_has_no_dollar_quotes() -> None:
    assert texts("SELECT $$; SELECT $name") == ["SELECT $$", "SELECT $name"]
    assert [(t.kind, t.text) for t in tokens("$name :x @y ?2 ?")] == [
        ("parameter", "$name"),
        ("parameter", ":x"),
        ("parameter", "@y"),
        ("parameter", "?2"),
        ("parameter", "?"),
    ]


# --- bodies with BEGIN ... END ------------------------------------------------------------

SQLITE_TRIGGER = (
    "CREATE TEMP TRIGGER IF NOT EXISTS audit AFTER UPDATE ON t\n"
    "WHEN CASE WHEN new.a > 0 THEN 1 ELSE 0 END\n"
    "BEGIN\n"
    "  INSERT INTO log VALUES (CASE WHEN new.a > 9 THEN 'big;' ELSE 'small' END);\n"
    "  UPDATE t SET b = CASE new.a WHEN 1 THEN 'one' END WHERE a = new.a;\n"
    "END"
)


def test_sqlite_trigger_with_case_is_one_statement() -> None:
    result = texts(SQLITE_TRIGGER + ";\nSELECT 1;")
    assert result == [SQLITE_TRIGGER, "SELECT 1"]
    assert sqlite3.complete_statement(result[0] + ";")
    conn = sqlite3.connect(":memory:")
    conn.executescript("CREATE TABLE t (a, b); CREATE TABLE log (x);")
    conn.execute(result[0])  # the text is exactly one valid statement


def test_sqlite_transaction_begin_end_split_normally() -> None:
    sql = "BEGIN;\nUPDATE t SET a = 1;\nEND;\nBEGIN TRANSACTION; COMMIT"
    result = texts(sql)
    assert result == ["BEGIN", "UPDATE t SET a = 1", "END", "BEGIN TRANSACTION", "COMMIT"]
    assert all(sqlite3.complete_statement(text + ";") for text in result)


def test_postgres_transaction_begin_end_split_normally() -> None:
    sql = "BEGIN; UPDATE t SET a = 1; END; BEGIN ATOMIC; SELECT 1"
    assert texts(sql, "postgres") == [
        "BEGIN",
        "UPDATE t SET a = 1",
        "END",
        "BEGIN ATOMIC",
        "SELECT 1",
    ]


@pytest.mark.parametrize(
    "create", ["CREATE FUNCTION f(x int) RETURNS int", "CREATE OR REPLACE PROCEDURE p(x int)"]
)
def test_postgres_begin_atomic_body(create: str) -> None:
    body = (
        f"{create} LANGUAGE sql\nBEGIN ATOMIC\n"
        "  INSERT INTO t VALUES (CASE WHEN x > 0 THEN x ELSE 0 END);\n"
        "  UPDATE t SET a = a + 1;\n"
        "END"
    )
    assert texts(body + ";\nCALL p(1);", "postgres") == [body, "CALL p(1)"]
    # SQLite knows nothing of BEGIN ATOMIC, so there the semicolons split.
    assert len(texts(body, "sqlite")) == 3


@pytest.mark.parametrize("create", ["CREATE RULE", "create or replace rule"])
def test_postgres_rule_actions_in_parentheses_are_one_statement(create: str) -> None:
    rule = (
        f"{create} keep AS ON DELETE TO parents DO ALSO (\n"
        "  DELETE FROM kids WHERE kids.parent_id = old.id;\n"
        "  UPDATE log SET n = (n + 1) WHERE id = 1\n"
        ")"
    )
    assert texts(rule + ";\nDELETE FROM x;", "postgres") == [rule, "DELETE FROM x"]


def test_semicolons_in_parentheses_split_outside_a_rule() -> None:
    """Only a rule's action list holds semicolons in parentheses: an unclosed parenthesis
    elsewhere (a typo in the editor) must not swallow the statements after it."""
    assert texts("SELECT (1; SELECT 2;", "postgres") == ["SELECT (1", "SELECT 2"]
    assert len(texts("CREATE RULE r AS ON DELETE TO t DO ALSO (DELETE FROM a; DELETE FROM b)")) == 2


# --- meta-commands ------------------------------------------------------------------------


def test_meta_commands_before_between_and_after_statements() -> None:
    sql = "\\session A\nSELECT 1;\n  \\session   B  \nSELECT 2;\n\\reset"
    items = split(sql)
    assert [type(item).__name__ for item in items] == [
        "MetaCommand",
        "Statement",
        "MetaCommand",
        "Statement",
        "MetaCommand",
    ]
    first, _, second, _, last = items
    assert isinstance(second, MetaCommand)
    assert (second.name, second.args, second.text) == ("session", ("B",), "\\session   B")
    assert (second.line, second.column) == (3, 3)
    assert sql[second.start : second.end] == second.text
    assert isinstance(first, MetaCommand) and first.args == ("A",)
    assert isinstance(last, MetaCommand) and (last.name, last.args) == ("reset", ())
    assert [s.index for s in split_statements(sql)] == [0, 1]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_meta_command_ends_unterminated_statement(dialect: Dialect) -> None:
    items = split("SELECT 1\n  FROM t\n\\session B\nSELECT 2;", dialect)
    assert [getattr(item, "text", None) for item in items] == [
        "SELECT 1\n  FROM t",
        "\\session B",
        "SELECT 2",
    ]


@pytest.mark.parametrize(
    ("sql", "dialect"),
    [
        ("SELECT 'a\n\\session B\n';", "sqlite"),
        ('SELECT "a\n\\session B\n";', "sqlite"),
        ("SELECT /*\n\\session B\n*/ 1;", "sqlite"),
        ("SELECT $$\n\\session B\n$$;", "postgres"),
        ("CREATE TRIGGER tr AFTER INSERT ON t BEGIN\n\\session B\nEND;", "sqlite"),
    ],
)
def test_backslash_line_inside_string_or_body_is_not_meta(sql: str, dialect: Dialect) -> None:
    items = split(sql, dialect)
    assert len(items) == 1
    assert isinstance(items[0], Statement)
    assert "\\session B" in items[0].text


def test_backslash_mid_line_is_not_meta() -> None:
    items = split("SELECT 1; \\session B")
    assert [type(item) for item in items] == [Statement, Statement]


# --- spans, line endings, comments, edge cases --------------------------------------------


def test_exact_spans() -> None:
    sql = "-- c\n  SELECT 1,\n    2;\n\\session B\nSELECT 3"
    first, meta, last = split(sql)
    assert first == Statement(
        text="SELECT 1,\n    2",
        index=0,
        start=7,
        end=22,
        line=2,
        column=3,
        end_line=3,
        end_column=5,
        leading_comments="-- c",
    )
    assert meta == MetaCommand("session", ("B",), "\\session B", 24, 34, 4, 1)
    assert isinstance(last, Statement)
    assert (last.index, last.line, last.column, last.end_line, last.end_column) == (1, 5, 1, 5, 8)


def test_crlf_counts_as_one_line_break() -> None:
    sql = "SELECT 1;\r\nSELECT\r\n  2;\r\n\r\n\\x on\r\nSELECT 3"
    _, second, meta, third = split(sql)
    assert isinstance(second, Statement)
    assert (second.text, second.line, second.column) == ("SELECT\r\n  2", 2, 1)
    assert (second.end_line, second.end_column) == (3, 3)
    assert isinstance(meta, MetaCommand)
    assert (meta.text, meta.args, meta.line) == ("\\x on", ("on",), 5)
    assert isinstance(third, Statement) and third.line == 6


@pytest.mark.parametrize(
    ("sql", "dialect", "expected"),
    [
        ("SELECT 1; SELECT 'abc; def\n  ", "sqlite", ["SELECT 1", "SELECT 'abc; def"]),
        ('SELECT "abc; def', "postgres", ['SELECT "abc; def']),
        ("SELECT E'abc\\'; def", "postgres", ["SELECT E'abc\\'; def"]),
        ("SELECT 1; /* never closed; SELECT 2", "sqlite", ["SELECT 1"]),
        ("SELECT 1 /* a /* b */ ; */", "postgres", ["SELECT 1"]),
        ("SELECT $$abc; def", "postgres", ["SELECT $$abc; def"]),
        ("SELECT [abc; def", "sqlite", ["SELECT [abc; def"]),
        ("SELECT 1 -- trailing", "sqlite", ["SELECT 1"]),
    ],
)
def test_unterminated_constructs_run_to_end(
    sql: str, dialect: Dialect, expected: list[str]
) -> None:
    assert texts(sql, dialect) == expected


@pytest.mark.parametrize("sql", ["", "   \n", ";;", " ; -- only a comment\n ; /* x */", "\r\n;"])
def test_empty_statements_produce_nothing(sql: str) -> None:
    assert split(sql) == []


def test_final_statement_without_semicolon_and_empty_ones_between() -> None:
    statements = split_statements("SELECT 1;;  ;SELECT 2")
    assert [(s.index, s.text) for s in statements] == [(0, "SELECT 1"), (1, "SELECT 2")]


def test_leading_comments() -> None:
    sql = (
        "SELECT 1 -- trailing; inside\n;\n"
        "-- dbsandbox: allow delete-without-where\n"
        "DELETE /* inner */ FROM t;\n"
        "/* a */ -- b\n"
        "SELECT 2;\n"
        "-- before meta\n"
        "\\session B\n"
        "-- after meta\n"
        "SELECT 3"
    )
    got = [(s.text, s.leading_comments) for s in split_statements(sql)]
    assert got == [
        ("SELECT 1", ""),
        ("DELETE /* inner */ FROM t", "-- dbsandbox: allow delete-without-where"),
        ("SELECT 2", "/* a */\n-- b"),
        ("SELECT 3", "-- after meta"),
    ]


def test_keyword() -> None:
    first, second, third = split_statements("select 1; (SELECT 2); with x AS (SELECT 1) TABLE x")
    assert (first.keyword, second.keyword, third.keyword) == ("SELECT", "", "WITH")


@pytest.mark.parametrize("dialect", DIALECTS)
def test_tokens_and_words(dialect: Dialect) -> None:
    sql = "SELECT \"Col\", 'str', 1.5e3 -- comment\n FROM t /* x */ WHERE b = 0x1F;"
    assert [(t.kind, t.text) for t in tokens(sql, dialect)] == [
        ("word", "SELECT"),
        ("quoted_identifier", '"Col"'),
        ("punct", ","),
        ("string", "'str'"),
        ("punct", ","),
        ("number", "1.5e3"),
        ("word", "FROM"),
        ("word", "t"),
        ("word", "WHERE"),
        ("word", "b"),
        ("punct", "="),
        ("number", "0x1F"),
        ("punct", ";"),
    ]
    assert words(sql, dialect) == ["SELECT", "FROM", "T", "WHERE", "B"]
    assert all(sql[t.start : t.end] == t.text for t in tokens(sql, dialect))


# --- properties ---------------------------------------------------------------------------

# Random text biased towards the characters and words the scanner cares about.
SQL_ISH = st.lists(
    st.one_of(
        st.sampled_from(list("'\"`[]$;-/*\\\r\n\t abEX1_()")),
        st.sampled_from(["BEGIN ", "END ", "CASE ", "ATOMIC ", "CREATE TRIGGER ", "$$", "$t$"]),
        st.characters(),
    ),
    max_size=120,
).map("".join)


@given(sql=SQL_ISH, dialect=st.sampled_from(DIALECTS))
def test_split_never_raises_and_spans_are_exact(sql: str, dialect: Dialect) -> None:
    items = split(sql, dialect)
    previous_end = 0
    for index, statement in enumerate(split_statements(sql, dialect)):
        assert statement.index == index
    for item in items:
        assert item.start >= previous_end
        assert item.end > item.start
        assert sql[item.start : item.end] == item.text
        assert (item.line, item.column) == naive_position(sql, item.start)
        previous_end = item.end
        if isinstance(item, Statement):
            assert item.text and item.text == item.text.strip()
            assert (item.end_line, item.end_column) == naive_position(sql, item.end - 1)
        else:
            assert item.text.startswith("\\") and item.text == item.text.strip()
    for token in tokens(sql, dialect):
        assert token.text and sql[token.start : token.end] == token.text


# What the fast lexer must get exactly as `_lex` does, one lexeme at a time: prefixed strings,
# exponents, digits str.isdigit accepts outside ASCII, nested comments, parameters, dollars.
LEXEMES = st.lists(
    st.one_of(
        st.sampled_from([*"'\"`[]$?:@;.-/*\\\r\n\t aeEx XbBnN_z09()#{}", "\x00", "\x7f"]),
        st.sampled_from(["--", "/*", "*/", "$$", "$t$", "$1", "?12", "1e5", "1e+", "0x1f", "E'"]),
        st.sampled_from(["\u00e9", "\u00b2", "\u0663", "\u00a0", "\u2028", "\x1c", "\u2460"]),
        st.characters(),
    ),
    max_size=60,
).map("".join)


def reference_tokens(sql: str, dialect: Dialect) -> list[tuple[str, str, int, int]]:
    """`tokens` the slow way: `_lex` at every lexeme."""
    found, i = [], 0
    while i < len(sql):
        kind, end = _lex(sql, i, dialect == "postgres")
        if kind not in ("space", "comment"):
            found.append((kind, sql[i:end], i, end))
        i = end
    return found


@given(sql=LEXEMES, dialect=st.sampled_from(DIALECTS))
def test_fast_lexer_matches_lexing_one_lexeme_at_a_time(sql: str, dialect: Dialect) -> None:
    assert [tuple(t) for t in tokens(sql, dialect)] == reference_tokens(sql, dialect)


SCRIPTS = st.lists(
    st.one_of(
        LEXEMES,
        st.sampled_from([";", ";\n", "\n\\set x 1\n", "-- c\n", "/* c */", " CASE ", " END "]),
        st.sampled_from(
            ["CREATE TRIGGER t BEGIN ", "CREATE FUNCTION f() BEGIN ATOMIC ", "DELETE "]
        ),
    ),
    max_size=8,
).map("".join)


@given(sql=SCRIPTS, dialect=st.sampled_from(DIALECTS))
def test_split_skipping_runs_of_lexemes_matches_one_at_a_time(sql: str, dialect: Dialect) -> None:
    skipping = split(sql, dialect)
    never = re.compile(r"(?!)")  # a regex that matches nothing: no run is ever skipped
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(statements, "_BULK", {False: never, True: never})
        assert split(sql, dialect) == skipping


# --- split_lexed: each statement with its tokens, the script lexed once -------------------


def relexed(sql: str, dialect: Dialect) -> list[tuple[Statement, list[Token]]]:
    """What `split_lexed` must give: each statement lexed again on its own."""
    return [(s, list(tokens(s.text, dialect))) for s in split_statements(sql, dialect)]


@given(sql=SCRIPTS, dialect=st.sampled_from(DIALECTS))
def test_split_lexed_tokens_are_the_statements_own(sql: str, dialect: Dialect) -> None:
    assert split_lexed(sql, dialect) == relexed(sql, dialect)


@given(sql=SQL_ISH, dialect=st.sampled_from(DIALECTS))
def test_split_lexed_on_sql_ish_text(sql: str, dialect: Dialect) -> None:
    assert split_lexed(sql, dialect) == relexed(sql, dialect)


def test_split_lexed_on_every_corpus_statement() -> None:
    corpus = Path(__file__).parent / "corpus" / "lint_corpus.toml"
    cases = tomllib.loads(corpus.read_text(encoding="utf-8"))["case"]
    count = 0
    for case in cases:
        for dialect in DIALECTS if case["dialect"] == "both" else (case["dialect"],):
            got = split_lexed(case["sql"], dialect)
            assert got == relexed(case["sql"], dialect), case["sql"]
            count += len(got)
    assert count > 500


TRICKY_SCRIPTS = [
    "SELECT 'a;b'; SELECT \"c;d\" FROM t;",
    "DO $$ BEGIN DELETE FROM t; END $$; DO $f$ SELECT 1; $f$ LANGUAGE sql",
    "SELECT $1, $a$ x; y $a$, $$ unterminated; body   ",
    "SELECT 'unterminated; string   \n\t ",
    "SELECT E'it\\'s; here' ; SELECT x'3b' ;",
    "/* lead; */ -- c\nDELETE FROM t /* mid */ WHERE a = 1 -- trail\n; -- after",
    "SELECT 1\r\n;\r\nSELECT /* a\r\nb */ 2\r\n",
    "SELECT 1 --x\r; SELECT 2",
    "SELECT 1\n\\session B\nDELETE FROM t\n\\explain SELECT 'x; y';\nSELECT 2",
    "\\traffic w every 50ms for 1s: UPDATE t SET a = 1;\nUPDATE t SET a = 2",
    "CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE t SET b = CASE WHEN 1 THEN 2 END; END; "
    "DELETE FROM t",
    "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END; SELECT 3",
    "CREATE OR REPLACE RULE r AS ON INSERT TO t DO ALSO (UPDATE a SET x = 1; UPDATE b SET y = 2);"
    " SELECT 1",
    "SELECT /* nested /* comment; */ still; */ 1; SELECT [a;b], `c;d`",
    'SELECT "unterminated; name   ',
    "SELECT 1 /* unterminated; comment   ",
    "SELECT \u00e9t\u00e9, \u0663, 1\u00b2, ?12, :name, @v; ;; ;",
    "   \n  ",
    "",
]


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("sql", TRICKY_SCRIPTS)
def test_split_lexed_on_tricky_scripts(sql: str, dialect: Dialect) -> None:
    assert split_lexed(sql, dialect) == relexed(sql, dialect)
    assert [s for s, _ in split_lexed(sql, dialect)] == split_statements(sql, dialect)


def test_body_statements_are_split_lexed_and_fresh_each_time() -> None:
    from sandbox.guard.bodies import body_statements

    body = "DECLARE r record;\nBEGIN\n  DELETE FROM t WHERE a = 'x;y';\n  RAISE NOTICE 'z';\nEND"
    first = body_statements(body)
    assert first == split_lexed(body, "postgres") and len(first) == 4
    first[0][1].clear()  # a caller may change what it was given: the next one is unaffected
    assert body_statements(body) == split_lexed(body, "postgres")
    assert body_statements("SELECT 1") == split_lexed("SELECT 1", "postgres")
    assert body_statements(body) == split_lexed(body, "postgres")


SQLITE_POOL = [
    "CREATE TABLE t (a INTEGER, b TEXT)",
    "INSERT INTO t VALUES (1, 'x; y')",
    "UPDATE t SET b = 'it''s; ok' WHERE a = 1",
    'SELECT "a;b", `c;d`, [e;f] FROM t',
    "SELECT 1 /* inner; comment */ + 2",
    "SELECT x'3b', :name, ?1, $v",
    "BEGIN",
    "END",
    "COMMIT",
    "CREATE TRIGGER tr AFTER INSERT ON t BEGIN "
    "UPDATE t SET b = CASE WHEN new.a > 0 THEN 'p;' ELSE 'n' END; DELETE FROM t WHERE a < 0; END",
    SQLITE_TRIGGER,
]
SEPARATORS = [";", ";\n", " ;\r\n", ";\n-- note; here\n", "; /* c; */ ", ";\n\n"]


@given(
    chosen=st.lists(st.sampled_from(SQLITE_POOL), max_size=8),
    separators=st.lists(st.sampled_from(SEPARATORS), min_size=8, max_size=8),
    final_semicolon=st.booleans(),
)
def test_joined_sqlite_statements_round_trip(
    chosen: list[str], separators: list[str], final_semicolon: bool
) -> None:
    sql = "".join(text + sep for text, sep in zip(chosen, separators, strict=False))
    if chosen and not final_semicolon:
        sql = sql[: len(sql) - len(separators[len(chosen) - 1])]
    statements = split_statements(sql)
    assert [s.text for s in statements] == chosen
    for statement in statements:
        assert sqlite3.complete_statement(statement.text + ";")
        assert sql[statement.start : statement.end] == statement.text


def test_lone_carriage_return_ends_line_comment_only_in_postgres() -> None:
    # SQLite's tokenizer ends "--" comments at "\n" only (checked against complete_statement).
    sql = "SELECT 1 --x\r; SELECT 2"
    assert not sqlite3.complete_statement("SELECT 1 --x\r;")
    assert texts(sql, "sqlite") == ["SELECT 1"]
    assert texts(sql, "postgres") == ["SELECT 1", "SELECT 2"]
    assert texts("SELECT 1 --x\r\n; SELECT 2", "sqlite") == ["SELECT 1", "SELECT 2"]
