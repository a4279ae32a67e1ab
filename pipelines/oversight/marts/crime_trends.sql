-- Crime trends: recorded crimes each month by borough and major category, with the last
-- 12 months against the 12 before (only when all 24 months are delivered).
-- Definition, columns and disclosure control: crime_trends.yaml.
-- Runs as it is: duckdb warehouse.duckdb < crime_trends.sql
WITH cells AS (
    SELECT oversight_ref.agreed_value('borough_crime', 'borough', borough) AS borough,
           oversight_ref.agreed_value('borough_crime', 'major_category', major_category)
               AS major_category,
           month, sum("count") AS crimes, count(*) AS source_rows,
           count(*) FILTER (WHERE "count" IS NULL) AS blank_cells
    FROM curated.borough_crime GROUP BY ALL
),
releases AS (
    SELECT month, max(_period) AS release FROM curated.borough_crime GROUP BY month
),
months AS (
    SELECT unnest(generate_series(min(month), max(month), INTERVAL 1 MONTH))::DATE AS month
    FROM cells HAVING count(*) > 0
),
grid AS (
    -- Every borough and category in every month; 0 where a release has no row for it,
    -- NULL for a month no release covers.
    SELECT p.borough, p.major_category, mo.month, r.release,
           CASE WHEN r.release IS NOT NULL THEN coalesce(c.crimes, 0) END AS crimes,
           coalesce(c.source_rows, 0) AS source_rows,
           coalesce(c.blank_cells, 0) AS blank_cells
    FROM (SELECT DISTINCT borough, major_category FROM cells) p
    CROSS JOIN months mo
    LEFT JOIN releases r ON r.month = mo.month
    LEFT JOIN cells c ON c.borough = p.borough AND c.major_category = p.major_category
                     AND c.month = mo.month
),
rolled AS (
    SELECT *,
           sum(crimes) OVER last12 AS _last, count(release) OVER last12 AS _last_n,
           sum(crimes) OVER prev12 AS _prev, count(release) OVER prev12 AS _prev_n
    FROM grid
    WINDOW last12 AS (PARTITION BY borough, major_category ORDER BY month
                      ROWS BETWEEN 11 PRECEDING AND CURRENT ROW),
           prev12 AS (PARTITION BY borough, major_category ORDER BY month
                      ROWS BETWEEN 23 PRECEDING AND 12 PRECEDING)
)
SELECT borough, major_category, month, release, crimes, source_rows, blank_cells,
       CASE WHEN _last_n = 12 THEN _last END AS last_12_months,
       CASE WHEN _prev_n = 12 THEN _prev END AS previous_12_months,
       last_12_months - previous_12_months AS change,
       CASE WHEN previous_12_months > 0
            THEN (last_12_months - previous_12_months) * 100.0 / previous_12_months
       END AS change_percent
FROM rolled
