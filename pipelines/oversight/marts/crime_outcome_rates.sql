-- Crime outcome rates: each month's street crimes by the group of their latest outcome
-- (from the outcomes file, else the street file's last outcome), by force and crime type.
-- Definition, columns and disclosure control: crime_outcome_rates.yaml.
-- Runs as it is: duckdb warehouse.duckdb < crime_outcome_rates.sql
WITH street AS (
    SELECT crime_id, month,
           oversight_ref.agreed_value('street_crime', 'crime_type', crime_type) AS crime_type,
           reported_by, last_outcome_category
    FROM curated.street_crime WHERE crime_id IS NOT NULL AND crime_id <> ''
),
crimes AS (
    SELECT crime_id,
           min(month) AS month,
           first(crime_type ORDER BY month, crime_type) AS crime_type,
           first(reported_by ORDER BY month, reported_by) AS force,
           first(last_outcome_category ORDER BY month DESC, last_outcome_category)
               FILTER (WHERE coalesce(last_outcome_category, '') <> '')
               AS street_outcome
    FROM street GROUP BY crime_id
),
outcomes AS (
    SELECT DISTINCT o.crime_id, o.month, o.outcome_type,
           coalesce(g.outcome_group, 'Not mapped') AS outcome_group,
           coalesce(g.precedence, 999) AS precedence
    FROM curated.crime_outcomes o
    LEFT JOIN oversight_ref.crime_outcome_groups g USING (outcome_type)
),
latest AS (
    -- A crime's latest outcome month; of several outcomes then, the group listed first.
    SELECT crime_id,
           first(outcome_group ORDER BY month DESC, precedence, outcome_type)
               AS outcome_group
    FROM outcomes GROUP BY crime_id
),
judged AS (
    SELECT c.month, c.force, c.crime_type,
           CASE WHEN l.crime_id IS NOT NULL THEN l.outcome_group
                WHEN c.street_outcome IS NOT NULL
                    THEN coalesce(g.outcome_group, 'Not mapped')
                ELSE 'No outcome recorded' END AS outcome_group,
           l.crime_id IS NOT NULL AS from_outcomes
    FROM crimes c
    LEFT JOIN latest l ON l.crime_id = c.crime_id
    LEFT JOIN oversight_ref.crime_outcome_groups g ON g.outcome_type = c.street_outcome
),
group_order AS (
    -- The groups in precedence order, then Not mapped, then No outcome recorded.
    SELECT outcome_group, min(precedence) AS position
    FROM oversight_ref.crime_outcome_groups GROUP BY outcome_group
)
SELECT j.month, j.force, j.crime_type, j.outcome_group,
       count(*) AS crimes,
       count(*) FILTER (WHERE j.from_outcomes) AS crimes_from_outcomes_file,
       sum(count(*)) OVER (PARTITION BY j.month, j.force, j.crime_type) AS crimes_of_type,
       count(*) / sum(count(*)) OVER (PARTITION BY j.month, j.force, j.crime_type)
           AS outcome_rate,
       coalesce(any_value(o.position),
                (SELECT count(*) FROM group_order)
                + CASE j.outcome_group WHEN 'Not mapped' THEN 0
                                       WHEN 'No outcome recorded' THEN 1 ELSE 2 END)
           AS _order
FROM judged j LEFT JOIN group_order o ON o.outcome_group = j.outcome_group
GROUP BY j.month, j.force, j.crime_type, j.outcome_group
