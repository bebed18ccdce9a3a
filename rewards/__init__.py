"""The credits bank: ledger, lots, wallet, redemption and expiry."""
