-- Trust and confidence (Public Attitude Survey): each borough's figure for each measure,
-- the year before, the change, and how it compares with the other boroughs.
-- Definition, columns and disclosure control: trust_and_confidence.yaml.
-- Runs as it is: duckdb warehouse.duckdb < trust_and_confidence.sql
WITH grouped AS (
    SELECT * REPLACE (
        oversight_ref.agreed_value('public_attitude_survey', 'borough', borough) AS borough,
        oversight_ref.agreed_value('public_attitude_survey', 'measure', measure) AS measure)
    FROM curated.public_attitude_survey
),
latest AS (
    -- A figure of a borough or measure the agreement does not list is kept, in the group
    -- 'Not an agreed value', but compared with nothing: different measures cannot be averaged.
    SELECT *, borough <> 'Not an agreed value' AND measure <> 'Not an agreed value' AS _agreed
    FROM grouped
    QUALIFY _period = max(_period) OVER (PARTITION BY date)
)
SELECT l.date, l.survey, l.borough, l.measure, l.proportion, l._period AS release,
       y.proportion AS proportion_year_before,
       (l.proportion - y.proportion) * 100 AS change_points,
       CASE WHEN l._agreed THEN avg(l.proportion) OVER (
           PARTITION BY l.date, l.survey, l.measure, l._agreed) END AS mean_of_boroughs,
       CASE WHEN l._agreed THEN rank() OVER (
           PARTITION BY l.date, l.survey, l.measure, l._agreed ORDER BY l.proportion DESC)
       END AS rank_among_boroughs
FROM latest l
LEFT JOIN latest y
  ON l._agreed AND y._agreed AND y.survey = l.survey AND y.borough = l.borough
 AND y.measure = l.measure AND y.date = (l.date - INTERVAL 1 YEAR)::DATE
