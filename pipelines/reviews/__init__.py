"""The leads' pages over the warehouse: the breach review and the agreement review."""
