-- Use of force by subject: use of force records per 1,000 residents of each ethnic group
-- (Census 2021), for all ages and for the age bands the census can divide by, with the
-- ratio to the White rate, for each month and the 12 months ending with it.
-- Definition, columns and disclosure control: use_of_force_subjects.yaml.
-- Runs as it is: duckdb warehouse.duckdb < use_of_force_subjects.sql
WITH records AS (
    SELECT date_trunc('month', incident_date)::DATE AS month,
           oversight_ref.ethnic_group('use_of_force.subject_ethnicity', subject_ethnicity)
               AS ethnic_group,
           coalesce(nullif(trim(subject_age), ''), 'Not recorded') AS subject_age
    FROM curated.use_of_force
),
age_map AS (SELECT * FROM oversight_ref.use_of_force_age_bands),
counts AS (
    SELECT month, ethnic_group, subject_age AS age_band, 'recorded band' AS age_band_level,
           NULL::VARCHAR AS census_age_band, count(*) AS records
    FROM records GROUP BY ALL
    UNION ALL
    SELECT r.month, r.ethnic_group, a.label, 'census band', a.census_age_band, count(*)
    FROM records r JOIN age_map a USING (subject_age) GROUP BY ALL
    UNION ALL
    SELECT month, ethnic_group, 'All ages', 'all ages', NULL, count(*)
    FROM records GROUP BY ALL
),
shown AS (
    -- Every Census group for every census band and for all ages, with 0 if none.
    SELECT g.ethnic_group, b.label AS age_band, 'census band' AS age_band_level,
           b.census_age_band
    FROM oversight_ref.ethnic_groups g
    CROSS JOIN (SELECT DISTINCT label, census_age_band FROM age_map) b
    WHERE g.census_group
    UNION ALL
    SELECT ethnic_group, 'All ages', 'all ages', NULL
    FROM oversight_ref.ethnic_groups WHERE census_group
    UNION
    SELECT DISTINCT ethnic_group, age_band, age_band_level, census_age_band FROM counts
),
monthly AS (
    SELECT mo.month, s.ethnic_group, s.age_band, s.age_band_level, s.census_age_band,
           coalesce(c.records, 0) AS records
    FROM (SELECT DISTINCT month FROM records) mo CROSS JOIN shown s
    LEFT JOIN counts c ON c.month = mo.month AND c.ethnic_group = s.ethnic_group
                      AND c.age_band = s.age_band AND c.age_band_level = s.age_band_level
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
           ethnic_group, age_band, age_band_level, census_age_band, records
    FROM monthly
    UNION ALL
    SELECT '12 months' AS time_window, w.month, (w.month - INTERVAL 11 MONTH)::DATE,
           w.months_with_data, g.ethnic_group, g.age_band, g.age_band_level,
           g.census_age_band, sum(g.records)
    FROM windows w
    JOIN monthly g ON g.month BETWEEN (w.month - INTERVAL 11 MONTH)::DATE AND w.month
    GROUP BY w.month, w.months_with_data, g.ethnic_group, g.age_band, g.age_band_level,
             g.census_age_band
),
with_population AS (
    SELECT w.*,
           CASE w.age_band_level WHEN 'all ages' THEN pa.population
                                 WHEN 'census band' THEN pb.population END AS population
    FROM windowed w
    LEFT JOIN oversight_ref.population pa ON pa.ethnic_group = w.ethnic_group
    LEFT JOIN oversight_ref.population_by_age pb ON pb.ethnic_group = w.ethnic_group
                                                AND pb.age_band = w.census_age_band
),
rated AS (
    SELECT *, CASE WHEN population > 0 THEN records * 1000.0 / population END
                  AS rate_per_1000
    FROM with_population
)
SELECT *,
       max(rate_per_1000) FILTER (WHERE ethnic_group = 'White') OVER cell
           AS white_rate_per_1000,
       CASE WHEN white_rate_per_1000 > 0 THEN rate_per_1000 / white_rate_per_1000 END
           AS ratio_to_white,
       -- The White count of the window: withholding it withholds the ratios (see yaml).
       max(records) FILTER (WHERE ethnic_group = 'White') OVER cell AS _white_records,
       oversight_ref.group_order(ethnic_group) AS _order,
       CASE age_band_level WHEN 'all ages' THEN 0 WHEN 'census band' THEN 1 ELSE 2 END
           AS _level
FROM rated
WINDOW cell AS (PARTITION BY time_window, month, age_band, age_band_level)
