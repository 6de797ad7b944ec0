"""Storage ports (record store, blob store) and their embedded SQLite defaults."""
