"""Learner text inside markup."""


def escape(text: str) -> str:
    """Make text safe inside Textual markup.

    Session names, SQL and engine messages may hold brackets: `[B]` would be read as a bold
    tag. textual.markup.escape leaves upper-case tags alone, so every bracket is escaped.
    """
    return text.replace("[", "\\[")
