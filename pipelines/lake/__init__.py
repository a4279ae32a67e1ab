"""The lake, the source of truth (a folder or S3), and the records kept in it: the register of
deliveries and breaches, leases, publishing of curated months, the history they replace,
provenance of the marts and retention. Reads only `pipelines.home`."""
