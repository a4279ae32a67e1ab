-- Stop and search outcomes: the share of searches after which action was taken (anything
-- but no further action), by ethnic group, power and object of search, for each month and
-- the 12 months ending with it. 'All' rows add up over a dimension.
-- Definition, columns and disclosure control: stop_search_outcomes.yaml.
-- Runs as it is: duckdb warehouse.duckdb < stop_search_outcomes.sql
--
-- A month has millions of searches but few distinct values: the searches are first counted
-- by London month and delivered values, and the mappings then read each distinct value once,
-- not each search. The London month is worked out once per distinct timestamp.
WITH search_months AS (
    SELECT date, oversight_ref.london_month(date) AS month
    FROM (SELECT DISTINCT date FROM curated.stop_and_search)
),
delivered AS (
    SELECT m.month, s.officer_defined_ethnicity, s.self_defined_ethnicity, s.legislation,
           s.object_of_search, s.outcome, count(*) AS searches
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
           CASE WHEN legislation IS NULL OR legislation = '' THEN 'Not recorded'
                ELSE oversight_ref.agreed_value('stop_and_search', 'legislation', legislation)
           END AS legislation,
           CASE WHEN object_of_search IS NULL OR object_of_search = '' THEN 'Not recorded'
                ELSE oversight_ref.agreed_value('stop_and_search', 'object_of_search',
                                                object_of_search)
           END AS object_of_search,
           outcome NOT IN (SELECT outcome FROM oversight_ref.search_no_further_action)
               AS action_taken,
           searches
    FROM delivered
),
stacked AS (
    SELECT month, 'officer-defined' AS basis, officer_group AS ethnic_group, legislation,
           object_of_search, action_taken, searches FROM searches
    UNION ALL
    SELECT month, 'self-defined', self_group, legislation, object_of_search, action_taken,
           searches
    FROM searches
),
monthly AS (
    SELECT month, basis,
           CASE WHEN grouping(ethnic_group) = 1 THEN 'All' ELSE ethnic_group END
               AS ethnic_group,
           CASE WHEN grouping(legislation) = 1 THEN 'All' ELSE legislation END
               AS legislation,
           CASE WHEN grouping(object_of_search) = 1 THEN 'All' ELSE object_of_search END
               AS object_of_search,
           sum(searches)::BIGINT AS searches,
           coalesce(sum(searches) FILTER (WHERE action_taken), 0)::BIGINT AS action_taken
    FROM stacked
    GROUP BY GROUPING SETS (
        (month, basis), (month, basis, ethnic_group), (month, basis, legislation),
        (month, basis, object_of_search),
        (month, basis, ethnic_group, legislation, object_of_search))
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
           basis, ethnic_group, legislation, object_of_search, searches, action_taken
    FROM monthly
    UNION ALL
    SELECT '12 months' AS time_window, w.month, (w.month - INTERVAL 11 MONTH)::DATE,
           w.months_with_data, g.basis, g.ethnic_group, g.legislation, g.object_of_search,
           sum(g.searches), sum(g.action_taken)
    FROM windows w
    JOIN monthly g ON g.month BETWEEN (w.month - INTERVAL 11 MONTH)::DATE AND w.month
    GROUP BY w.month, w.months_with_data, g.basis, g.ethnic_group, g.legislation,
             g.object_of_search
)
SELECT *, action_taken / searches AS action_taken_share,
       (ethnic_group <> 'All')::INT + (legislation <> 'All')::INT
           + (object_of_search <> 'All')::INT AS _depth,
       CASE WHEN ethnic_group = 'All' THEN 0
            ELSE oversight_ref.group_order(ethnic_group) + 1 END AS _order
FROM windowed
