"""Queries and commands over the data model. Functions take a Session and never commit."""
