"""Organisations, activities, sessions, check-in, claims and their approval."""
