"""Demo data of the ledger (filled in below)."""
