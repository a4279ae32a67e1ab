-- Stop and search disproportionality: searches per 1,000 residents of each ethnic group
-- (Census 2021), and the ratio to the White rate, on officer-defined and self-defined
-- ethnicity, for each month and for the 12 months ending with it.
-- Definition, columns and disclosure control: stop_search_disproportionality.yaml.
-- Runs as it is: duckdb warehouse.duckdb < stop_search_disproportionality.sql
-- (the runner withholds small counts, casts the columns and orders the rows).
--
-- A month has millions of searches but few distinct values: the searches are first counted
-- by London month and delivered ethnicities, and the mappings then read each distinct value
-- once, not each search. The London month is worked out once per distinct timestamp.
WITH search_months AS (
    SELECT date, oversight_ref.london_month(date) AS month
    FROM (SELECT DISTINCT date FROM curated.stop_and_search)
),
delivered AS (
    SELECT m.month, s.officer_defined_ethnicity, s.self_defined_ethnicity, count(*) AS searches
    FROM curated.stop_and_search s
    JOIN search_months m ON m.date IS NOT DISTINCT FROM s.date
    GROUP BY ALL
),
searches AS (
    SELECT month,
           oversight_ref.ethnic_group('stop_and_search.officer_defined_ethnicity',
                                      officer_defined_ethnicity) AS officer_group,
           oversight_ref.ethnic_group('stop_and_search.self_defined_ethnicity',
                                      self_defined_ethnicity) AS self_group,
           searches
    FROM delivered
),
counts AS (
    SELECT month, 'officer-defined' AS basis, officer_group AS ethnic_group,
           sum(searches)::BIGINT AS searches
    FROM searches GROUP BY ALL
    UNION ALL
    SELECT month, 'self-defined', self_group, sum(searches)::BIGINT FROM searches GROUP BY ALL
),
-- Every Census group is shown every month, with 0 searches if none (officers cannot
-- record Mixed, so the officer-defined rows have the groups the officer mapping reaches).
shown_groups AS (
    SELECT DISTINCT 'officer-defined' AS basis, m.ethnic_group
    FROM oversight_ref.ethnicity_map m
    JOIN oversight_ref.ethnic_groups g ON g.ethnic_group = m.ethnic_group AND g.census_group
    WHERE m.mapping = 'stop_and_search.officer_defined_ethnicity'
    UNION ALL
    SELECT 'self-defined', ethnic_group FROM oversight_ref.ethnic_groups WHERE census_group
    UNION
    SELECT DISTINCT basis, ethnic_group FROM counts
),
monthly AS (
    SELECT mo.month, g.basis, g.ethnic_group, coalesce(c.searches, 0) AS searches
    FROM (SELECT DISTINCT month FROM searches) mo
    CROSS JOIN shown_groups g
    LEFT JOIN counts c
      ON c.month = mo.month AND c.basis = g.basis AND c.ethnic_group = g.ethnic_group
),
-- Each month on its own ('month'), and the 12 months ending with each month with data
-- ('12 months'), saying how many of those months have any data.
data_months AS (SELECT DISTINCT month FROM monthly),
windows AS (
    SELECT m.month, count(*) AS months_with_data
    FROM data_months m
    JOIN data_months d ON d.month BETWEEN (m.month - INTERVAL 11 MONTH)::DATE AND m.month
    GROUP BY m.month
),
windowed AS (
    SELECT 'month' AS time_window, month, month AS window_start, 1 AS months_with_data,
           basis, ethnic_group, searches
    FROM monthly
    UNION ALL
    SELECT '12 months' AS time_window, w.month, (w.month - INTERVAL 11 MONTH)::DATE,
           w.months_with_data, g.basis, g.ethnic_group, sum(g.searches)
    FROM windows w
    JOIN monthly g ON g.month BETWEEN (w.month - INTERVAL 11 MONTH)::DATE AND w.month
    GROUP BY w.month, w.months_with_data, g.basis, g.ethnic_group
),
rated AS (
    SELECT w.*, p.population,
           CASE WHEN p.population > 0 THEN w.searches * 1000.0 / p.population END
               AS rate_per_1000
    FROM windowed w LEFT JOIN oversight_ref.population p ON p.ethnic_group = w.ethnic_group
)
SELECT time_window, month, window_start, months_with_data, basis, ethnic_group,
       searches,
       searches / sum(searches) OVER cell AS share_of_searches,
       population, rate_per_1000,
       max(rate_per_1000) FILTER (WHERE ethnic_group = 'White') OVER cell
           AS white_rate_per_1000,
       CASE WHEN white_rate_per_1000 > 0 THEN rate_per_1000 / white_rate_per_1000 END
           AS ratio_to_white,
       -- The White count of the window: withholding it withholds the ratios (see yaml).
       max(searches) FILTER (WHERE ethnic_group = 'White') OVER cell AS _white_searches,
       oversight_ref.group_order(ethnic_group) AS _order
FROM rated
WINDOW cell AS (PARTITION BY time_window, month, basis)
