"""`dbsandbox trace`: SQLAlchemy programs on the same timeline as SQL sessions."""
