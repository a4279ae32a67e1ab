-- Data quality: how complete each key field is in the curated rows of every contract and
-- delivery period, against the completeness the agreement sets.
-- oversight_ref.key_field_counts has a row per key field of every contract and period (made
-- from the contracts when the warehouse is built); this is the measure over it.
-- Definition, columns and disclosure control: data_quality.yaml.
-- Runs as it is: duckdb warehouse.duckdb < data_quality.sql
SELECT *,
       (curated_rows - missing_rows) * 100.0 / curated_rows AS completeness_percent,
       CASE WHEN agreed_max_missing_percent IS NOT NULL
            THEN missing_rows * 100.0 / curated_rows <= agreed_max_missing_percent
       END AS within_agreement
FROM oversight_ref.key_field_counts
