"""What the editor offers to complete at the cursor: keywords, tables, columns and aliases.

The statement under the cursor is nearly always unfinished while it is typed, so nothing here
parses it: the tolerant lexer of sandbox.statements gives its tokens, and a few rules read the
context from them (a table name follows FROM, JOIN, UPDATE, INTO or TABLE; `o.` wants the
columns of the table `o` stands for). Never raises, whatever the text.

The schema is what the schema pane read: the committed tables, seen from a connection of its
own. A table the learner's session created in a transaction not yet committed is not in it, so
`CREATE TABLE` statements in the editor's own text are read too (see `editor_tables`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sandbox.schema_summary import TableSummary
from sandbox.statements import Dialect, Statement, Token, in_literal, split, tokens

_KEYWORD_TEXT = (
    "SELECT FROM WHERE AND OR NOT NULL IS IN EXISTS BETWEEN LIKE ILIKE AS ON USING JOIN INNER "
    "LEFT RIGHT FULL OUTER CROSS NATURAL GROUP BY HAVING ORDER ASC DESC LIMIT OFFSET DISTINCT "
    "UNION ALL INTERSECT EXCEPT INSERT INTO VALUES DEFAULT UPDATE SET DELETE RETURNING CREATE "
    "TABLE VIEW INDEX UNIQUE PRIMARY KEY FOREIGN REFERENCES CHECK CONSTRAINT DROP ALTER ADD "
    "COLUMN RENAME TO IF CASCADE TRUNCATE BEGIN COMMIT ROLLBACK SAVEPOINT RELEASE TRANSACTION "
    "CASE WHEN THEN ELSE END CAST COUNT SUM AVG MIN MAX COALESCE WITH RECURSIVE EXPLAIN "
    "ANALYZE VACUUM INTEGER TEXT REAL NUMERIC BOOLEAN VARCHAR TIMESTAMP DATE TRUE FALSE "
    "ISOLATION LEVEL SERIALIZABLE READ COMMITTED REPEATABLE LOCK FOR SHARE NOWAIT"
)
KEYWORDS = tuple(_KEYWORD_TEXT.split())

# Words after which the next name is a table.
_TABLE_BEFORE = frozenset({"FROM", "JOIN", "UPDATE", "INTO", "TABLE", "TRUNCATE"})
# Words that end a FROM list: after them a comma separates expressions, not tables.
_CLAUSE_END = frozenset(
    {"WHERE", "GROUP", "ORDER", "HAVING", "LIMIT", "ON", "USING", "SET", "VALUES", "SELECT"}
)
# A word after a table name that is not its alias.
_NOT_ALIAS = frozenset(KEYWORDS) | {"LATERAL", "ONLY", "WINDOW", "FETCH"}


@dataclass(frozen=True)
class Candidate:
    text: str  # what is inserted
    kind: str  # "column", "table" or "keyword"
    detail: str = ""  # where a column comes from: its table
    dialect: Dialect = "sqlite"

    @property
    def insert(self) -> str:
        """What goes into the editor: a name that is no plain identifier, double-quoted."""
        if self.kind == "keyword" or _plain(self.text, self.dialect):
            return self.text
        return '"' + self.text.replace('"', '""') + '"'


def _plain(name: str, dialect: Dialect) -> bool:
    """Whether `name` needs no quotes: a bare identifier that is not a keyword (and, in
    PostgreSQL, which folds bare names to lower case, has no capitals)."""
    bare = re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]*", name) is not None
    folds = dialect != "postgres" or name == name.lower()
    return bare and folds and name.upper() not in _NOT_ALIAS


@dataclass(frozen=True)
class Completion:
    start: int  # offset in the text where the word being completed begins
    prefix: str  # the part of it already typed
    candidates: list[Candidate]


def _name(token: Token) -> str:
    if token.kind == "quoted_identifier" and len(token.text) >= 2:
        return token.text[1:-1].replace(token.text[0] * 2, token.text[0])
    return token.text


def _is_name(token: Token) -> bool:
    return token.kind in ("word", "quoted_identifier")


def statement_at(text: str, offset: int, dialect: Dialect) -> tuple[str, int]:
    """The statement the cursor is in (or just after) and where it starts in `text`.

    An unfinished statement still counts: the one whose span reaches the cursor.
    """
    found: tuple[str, int] = ("", offset)
    for item in split(text, dialect):
        if item.start > offset:
            break
        ended = not isinstance(item, Statement) or text.find(";", item.end, offset) >= 0
        found = ("", offset) if ended else (text[item.start : max(item.end, offset)], item.start)
    return found


def aliases(statement: str, dialect: Dialect) -> dict[str, str]:
    """Every name a table goes by in `statement`, lower-cased: its alias, and its own name."""
    found: dict[str, str] = {}
    toks = list(tokens(statement, dialect))
    in_from = False
    i = 0
    while i < len(toks):
        word = toks[i].text.upper() if toks[i].kind == "word" else ""
        starts_table = word in _TABLE_BEFORE or (in_from and toks[i].text == ",")
        if word in _CLAUSE_END:
            in_from = False
        if word in ("FROM", "JOIN"):
            in_from = True
        if not starts_table or i + 1 >= len(toks) or not _is_name(toks[i + 1]):
            i += 1
            continue
        j = i + 1
        if toks[j].text.upper() in ("ONLY", "LATERAL", "IF", "EXISTS", "NOT"):
            i += 1
            continue
        # schema.table: the table is the last part.
        while j + 2 < len(toks) and toks[j + 1].text == "." and _is_name(toks[j + 2]):
            j += 2
        table = _name(toks[j])
        found.setdefault(table.lower(), table)
        k = j + 1
        if k < len(toks) and toks[k].text.upper() == "AS":
            k += 1
        if (
            k < len(toks)
            and _is_name(toks[k])
            and (toks[k].kind == "quoted_identifier" or toks[k].text.upper() not in _NOT_ALIAS)
        ):
            found[_name(toks[k]).lower()] = table
            k += 1
        i = k
    return found


def editor_tables(text: str, dialect: Dialect) -> list[TableSummary]:
    """Tables the editor's own `CREATE TABLE name (col type, ...)` statements define."""
    from sandbox.schema_summary import ColumnSummary

    tables: list[TableSummary] = []
    for item in split(text, dialect):
        if not isinstance(item, Statement):
            continue
        toks = list(tokens(item.text, dialect))
        words = [t.text.upper() for t in toks[:3]]
        if words[:1] != ["CREATE"] or "TABLE" not in words:
            continue
        i = next(n for n, t in enumerate(toks) if t.text.upper() == "TABLE") + 1
        while i < len(toks) and toks[i].text.upper() in ("IF", "NOT", "EXISTS"):
            i += 1
        while i + 2 < len(toks) and toks[i + 1].text == ".":
            i += 2
        if i >= len(toks) or not _is_name(toks[i]):
            continue
        name = _name(toks[i])
        columns: list[ColumnSummary] = []
        depth, expect_column = 0, False
        for token in toks[i + 1 :]:
            if token.text == "(":
                depth += 1
                expect_column = depth == 1
                continue
            if token.text == ")":
                depth -= 1
                continue
            if depth == 1 and token.text == ",":
                expect_column = True
                continue
            if expect_column and _is_name(token):
                upper = token.text.upper()
                if token.kind == "quoted_identifier" or upper not in _CONSTRAINT_WORDS:
                    columns.append(ColumnSummary(_name(token), "", False, False))
            expect_column = False
        tables.append(TableSummary(name, None, columns))
    return tables


_CONSTRAINT_WORDS = frozenset({"PRIMARY", "FOREIGN", "UNIQUE", "CHECK", "CONSTRAINT", "EXCLUDE"})


def _word_before(text: str, offset: int) -> int:
    """Where the word ending at `offset` begins."""
    start = offset
    while start > 0 and (text[start - 1].isalnum() or text[start - 1] in "_$"):
        start -= 1
    return start


def follows_word(text: str, offset: int) -> bool:
    """Whether the cursor is just after a word character or a `.` (where Tab completes)."""
    return offset > 0 and (text[offset - 1].isalnum() or text[offset - 1] in "_$.")


def complete(
    text: str, offset: int, schema: list[TableSummary], dialect: Dialect = "sqlite"
) -> Completion:
    """What may be typed at `offset` of the editor's `text`, best first, matching what is
    typed there already (case-insensitive)."""
    offset = max(0, min(offset, len(text)))
    start = _word_before(text, offset)
    prefix = text[start:offset]
    if in_literal(text, offset, dialect):
        return Completion(start, prefix, [])  # a comment or a string: words there are text
    statement, statement_start = statement_at(text, offset, dialect)
    known = {t.name.lower(): t for t in schema}
    for table in editor_tables(text, dialect):
        known.setdefault(table.name.lower(), table)
    names = aliases(statement, dialect)
    lowered = prefix.lower()

    def matches(candidates: list[Candidate]) -> list[Candidate]:
        seen: set[str] = set()
        kept = []
        for c in candidates:
            text = c.text.lower()
            if text.startswith(lowered) and text != lowered and c.text not in seen:
                seen.add(c.text)
                kept.append(c)
        return kept

    def columns_of(table_name: str) -> list[Candidate]:
        table = known.get(table_name.lower())
        if table is None:
            return []
        return [Candidate(c.name, "column", table.name, dialect) for c in table.columns]

    ordered = sorted(known.values(), key=lambda t: t.name)
    tables = [Candidate(t.name, "table", dialect=dialect) for t in ordered]
    if start > 0 and text[start - 1] == ".":
        qualifier = text[_word_before(text, start - 1) : start - 1]
        named = names.get(qualifier.lower(), qualifier)
        return Completion(start, prefix, matches(columns_of(named)))
    before = list(tokens(text[statement_start:start], dialect)) if statement else []
    previous = before[-1].text.upper() if before else ""
    if previous in _TABLE_BEFORE or (previous == "," and _in_from_list(before)):
        return Completion(start, prefix, matches(tables))
    upper = prefix.isupper() or not prefix
    keywords = [Candidate(k if upper else k.lower(), "keyword") for k in KEYWORDS]
    columns = [c for table in dict.fromkeys(names.values()) for c in columns_of(table)]
    return Completion(start, prefix, matches(columns + keywords + tables))


def _in_from_list(before: list[Token]) -> bool:
    """Whether the last clause keyword before the cursor is FROM (a comma lists tables)."""
    for token in reversed(before):
        word = token.text.upper() if token.kind == "word" else ""
        if word == "FROM":
            return True
        if word in _CLAUSE_END or word == "JOIN":
            return False
    return False
