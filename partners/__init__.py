"""Partner businesses, offers, settlement, the payments gateway and its webhooks."""
