"""Postback dispatcher: decides which events a partner is owed and delivers them."""

__version__ = "0.1.0"
