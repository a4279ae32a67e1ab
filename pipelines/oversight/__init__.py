"""Oversight: the performance framework's measures as marts an analyst owns
(`marts/<mart>.sql` and `.yaml`, the category `mappings/`), the runner that computes and
suppresses them, and the oversight pack with its charts, archive and first page."""
