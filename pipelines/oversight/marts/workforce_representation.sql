-- Workforce representation: the ethnic make-up of the workforce against London's.
-- Definition, columns and disclosure control: workforce_representation.yaml.
-- Runs as it is: duckdb warehouse.duckdb < workforce_representation.sql
WITH staff AS (
    SELECT month, worker_type,
           oversight_ref.ethnic_group('workforce.ethnicity', ethnicity) AS ethnic_group,
           headcount
    FROM curated.workforce
),
counts AS (
    SELECT month,
           CASE WHEN grouping(worker_type) = 1 THEN 'All' ELSE worker_type END
               AS worker_type,
           ethnic_group, sum(headcount) AS headcount
    FROM staff
    GROUP BY GROUPING SETS ((month, worker_type, ethnic_group), (month, ethnic_group))
),
census_groups AS (
    SELECT ethnic_group FROM oversight_ref.ethnic_groups WHERE census_group
),
cells AS (
    -- Every Census group in every month and worker type, with 0 if none.
    SELECT DISTINCT c.month, c.worker_type, g.ethnic_group
    FROM counts c CROSS JOIN census_groups g
    UNION SELECT month, worker_type, ethnic_group FROM counts
),
grid AS (
    SELECT x.month, x.worker_type, x.ethnic_group, coalesce(c.headcount, 0) AS headcount,
           -- Whether the group is one of the Census groups (not Not stated, ...).
           x.ethnic_group IN (SELECT ethnic_group FROM census_groups) AS _stated
    FROM cells x LEFT JOIN counts c
      ON c.month = x.month AND c.worker_type = x.worker_type
     AND c.ethnic_group = x.ethnic_group
)
SELECT g.*,
       headcount / sum(headcount) OVER cell AS share_of_workforce,
       CASE WHEN g._stated
            THEN headcount / sum(headcount) FILTER (WHERE g._stated) OVER cell
       END AS share_of_stated,
       p.population / sum(p.population) OVER cell AS london_share,
       share_of_stated / london_share AS representation_ratio,
       (share_of_stated - london_share) * 100 AS gap_points,
       oversight_ref.group_order(g.ethnic_group) AS _order,
       (g.worker_type <> 'All')::INT AS _level
FROM grid g LEFT JOIN oversight_ref.population p ON p.ethnic_group = g.ethnic_group
WINDOW cell AS (PARTITION BY g.month, g.worker_type)
