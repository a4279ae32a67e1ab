"""The warehouse: `warehouse.duckdb`, a catalog of views over the lake (curated, oversight,
governance), with the reference tables the marts join. It reads everything below it and
holds no data of its own."""
