"""Resolver functions: validate input, call `storage/`, return records. No Mongo here."""
