-- Emergency response: calls of each grade answered within the target, by borough and month.
-- Definition, columns and disclosure control: emergency_response.yaml.
-- Runs as it is: duckdb warehouse.duckdb < emergency_response.sql
WITH calls AS (
    SELECT oversight_ref.london_month(call_received) AS month,
           -- A borough the agreement does not list counts as 'Not an agreed value'.
           CASE WHEN borough IS NULL OR borough = '' THEN 'Not recorded'
                ELSE oversight_ref.agreed_value('emergency_response', 'borough', borough)
           END AS borough,
           grade, t.target_minutes,
           date_diff('second', call_received, first_arrival) AS seconds
    FROM curated.emergency_response JOIN oversight_ref.response_targets t USING (grade)
)
SELECT month, borough, grade, target_minutes,
       count(*) AS calls,
       count(seconds) AS calls_attended,
       count(*) FILTER (WHERE seconds <= target_minutes * 60) AS attended_within_target,
       attended_within_target / calls_attended AS share_within_target,
       median(seconds) / 60.0 AS median_minutes_to_arrival
FROM calls GROUP BY month, borough, grade, target_minutes
