"""No Tornado: targets, their workers and secrets, and the delivery policy."""
