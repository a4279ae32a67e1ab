-- Use of force by tactic: how many use of force records list each tactic, and what share
-- of the records that is, by ethnic group ('All' for every group), for each month and the
-- 12 months ending with it.
-- Definition, columns and disclosure control: use_of_force_tactics.yaml.
-- Runs as it is: duckdb warehouse.duckdb < use_of_force_tactics.sql
WITH records AS (
    SELECT _delivery_id, _source_row, date_trunc('month', incident_date)::DATE AS month,
           oversight_ref.ethnic_group('use_of_force.subject_ethnicity', subject_ethnicity)
               AS ethnic_group,
           COLUMNS('^tactic_[0-9]+$')
    FROM curated.use_of_force
),
used AS (
    -- A record counts once for a tactic, however many of its twenty columns list it. The
    -- twenty columns share one list of agreed tactics (tactic_1's).
    SELECT DISTINCT _delivery_id, _source_row, month, ethnic_group,
           oversight_ref.agreed_value('use_of_force', 'tactic_1', tactic) AS tactic
    FROM (UNPIVOT records ON COLUMNS('^tactic_[0-9]+$') INTO NAME slot VALUE tactic)
    WHERE trim(tactic) <> ''
),
with_tactic AS (
    SELECT month,
           CASE WHEN grouping(ethnic_group) = 1 THEN 'All' ELSE ethnic_group END
               AS ethnic_group,
           tactic, count(*) AS records_with_tactic
    FROM used GROUP BY GROUPING SETS ((month, tactic), (month, ethnic_group, tactic))
),
totals AS (
    SELECT month,
           CASE WHEN grouping(ethnic_group) = 1 THEN 'All' ELSE ethnic_group END
               AS ethnic_group,
           count(*) AS records
    FROM records GROUP BY GROUPING SETS ((month), (month, ethnic_group))
),
-- Each month on its own ('month'), and the 12 months ending with each month with data
-- ('12 months'), saying how many of those months have any data; for the tactics and for
-- the records they are a share of.
tactic_months AS (SELECT DISTINCT month FROM with_tactic),
tactic_windows AS (
    SELECT m.month, count(*) AS months_with_data
    FROM tactic_months m
    JOIN tactic_months d ON d.month BETWEEN (m.month - INTERVAL 11 MONTH)::DATE AND m.month
    GROUP BY m.month
),
tactic_w AS (
    SELECT 'month' AS time_window, month, month AS window_start, 1 AS months_with_data,
           ethnic_group, tactic, records_with_tactic
    FROM with_tactic
    UNION ALL
    SELECT '12 months' AS time_window, w.month, (w.month - INTERVAL 11 MONTH)::DATE,
           w.months_with_data, g.ethnic_group, g.tactic, sum(g.records_with_tactic)
    FROM tactic_windows w
    JOIN with_tactic g ON g.month BETWEEN (w.month - INTERVAL 11 MONTH)::DATE AND w.month
    GROUP BY w.month, w.months_with_data, g.ethnic_group, g.tactic
),
total_months AS (SELECT DISTINCT month FROM totals),
total_windows AS (
    SELECT m.month, count(*) AS months_with_data
    FROM total_months m
    JOIN total_months d ON d.month BETWEEN (m.month - INTERVAL 11 MONTH)::DATE AND m.month
    GROUP BY m.month
),
total_w AS (
    SELECT 'month' AS time_window, month, month AS window_start, 1 AS months_with_data,
           ethnic_group, records
    FROM totals
    UNION ALL
    SELECT '12 months' AS time_window, w.month, (w.month - INTERVAL 11 MONTH)::DATE,
           w.months_with_data, g.ethnic_group, sum(g.records)
    FROM total_windows w
    JOIN totals g ON g.month BETWEEN (w.month - INTERVAL 11 MONTH)::DATE AND w.month
    GROUP BY w.month, w.months_with_data, g.ethnic_group
)
SELECT t.*, a.records, t.records_with_tactic / a.records AS share_of_records,
       CASE WHEN t.ethnic_group = 'All' THEN 0
            ELSE oversight_ref.group_order(t.ethnic_group) + 1 END AS _order
FROM tactic_w t
JOIN total_w a ON a.time_window = t.time_window AND a.month = t.month
              AND a.ethnic_group = t.ethnic_group
