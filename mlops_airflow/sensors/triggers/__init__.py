"""Triggers for the deferrable sensors: they run in the triggerer, holding no worker slot."""
