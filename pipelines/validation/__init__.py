"""Validation of a landed delivery: its rows (pandera, in bounded memory), the dataset
(great-expectations and its Data Docs), and the delivery as the month's (month checks)."""
