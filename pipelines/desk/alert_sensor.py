"""The `desk_alerts` sensor: the leads' alerts by email under the daemon.

Wherever the Dagster daemon runs (`datashare ui`, a deployment), every minute it sends each
lead the alerts `pipelines.desk.alerts` finds new (a critical breach, a delivery held back
or rejected, a late delivery), once; `datashare run` does the same after its runs. Off
(skipping, saying why) while `DATASHARE_SMTP_HOST` or `DATASHARE_ALERT_TO` is unset.
"""

from __future__ import annotations

import dagster as dg

from pipelines.home.settings import Settings

SENSOR_NAME = "desk_alerts"


def build_alert_sensor(settings: Settings) -> dg.SensorDefinition:
    """The alert sensor for one home."""

    @dg.sensor(
        name=SENSOR_NAME,
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Emails each data-sharing lead, once, about a critical breach, a "
        "delivery held back or rejected, or a late delivery (DATASHARE_SMTP_HOST, "
        "DATASHARE_ALERT_TO).",
    )
    def desk_alerts(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        from pipelines.desk.alerts import load_alert_settings, send_alerts

        alert = load_alert_settings()
        if alert is None:
            return dg.SkipReason("Alerts are off: set DATASHARE_SMTP_HOST and DATASHARE_ALERT_TO.")
        sent = send_alerts(settings, alert)
        if sent.failed:
            context.log.warning(sent.text())
        return dg.SkipReason(sent.text())

    return desk_alerts
