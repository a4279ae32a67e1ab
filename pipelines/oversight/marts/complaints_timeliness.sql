-- Complaints timeliness: allegations finalised each month and how long they took, and
-- allegations still open at each month's end, by handling.
-- Definition, columns and disclosure control: complaints_timeliness.yaml.
-- Runs as it is: duckdb warehouse.duckdb < complaints_timeliness.sql
WITH latest AS (
    -- Each allegation as its latest snapshot has it (curated.complaints has every snapshot).
    SELECT * FROM curated.complaints
    QUALIFY row_number() OVER (PARTITION BY case_reference, allegation_number
                               ORDER BY _period DESC, _source_row) = 1
),
delivered AS (
    SELECT last_day(strptime(max(_period), '%Y-%m')::DATE) AS last_day
    FROM curated.complaints
),
finalised AS (
    SELECT date_trunc('month', finalised_date)::DATE AS month, handling,
           count(*) AS allegations_finalised,
           median(date_diff('day', received_date, finalised_date))
               AS median_days_to_finalise,
           avg(date_diff('day', received_date, finalised_date)) AS mean_days_to_finalise,
           quantile_disc(date_diff('day', received_date, finalised_date), 0.9)
               AS p90_days_to_finalise
    FROM latest
    -- Not past the latest delivered month (its extraction runs into the next one, which
    -- no delivery covers yet), and never before receipt (a breach kept as delivered).
    WHERE finalised_date BETWEEN received_date AND (SELECT last_day FROM delivered)
    GROUP BY ALL
),
snapshots AS (
    SELECT *, strptime(_period, '%Y-%m')::DATE AS snapshot_month,
           last_day(strptime(_period, '%Y-%m')::DATE) AS snapshot_end
    FROM curated.complaints
),
open_flags AS (
    SELECT *, received_date <= snapshot_end
              AND (finalised_date IS NULL OR finalised_date > snapshot_end) AS is_open
    FROM snapshots
),
still_open AS (
    SELECT snapshot_month AS month, handling,
           count(*) FILTER (WHERE is_open) AS open_at_month_end,
           median(date_diff('day', received_date, snapshot_end)) FILTER (WHERE is_open)
               AS median_days_open
    FROM open_flags GROUP BY ALL
)
SELECT coalesce(f.month, o.month) AS month, coalesce(f.handling, o.handling) AS handling,
       coalesce(f.allegations_finalised, 0) AS allegations_finalised,
       f.median_days_to_finalise, f.mean_days_to_finalise, f.p90_days_to_finalise,
       o.open_at_month_end, o.median_days_open
FROM finalised f FULL JOIN still_open o ON o.month = f.month AND o.handling = f.handling
