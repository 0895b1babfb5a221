"""Typed, frozen models at the boundaries: events, configuration, TikTok, dead letters."""
