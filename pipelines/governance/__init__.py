"""Governance: what the register says now (its views), the breach register leads work from,
notices to the force, the delivery schedule (late and missing months) and the audit log."""
