"""Why a Dagster run failed, in words a data engineer can act on.

What the force sends never fails a run (it is rejected, held or quarantined with its
reasons); what does is the machine: a full disk, an S3 store out of reach, a permission.
Each is said plainly, with what became of the month (nothing half-published: the next run
finishes it) and what to do; anything else is named by its error and first line, with the
Dagster run to open for the rest.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import dagster as dg
    from dagster._core.execution.job_execution_result import JobExecutionResult

# A blocking check that held a delivery back (runs recorded before the check stopped blocking).
CHECK_FAILED = "DagsterAssetCheckFailedError"

NEXT_RUN = "Nothing from the month was half-published; the next run finishes it."
KNOWN = (
    (
        ("No space left on device", "Errno 28", "ENOSPC"),
        "the disk is full (no space left on device) where the lake or a temporary copy is "
        "written. Free some space and run again. " + NEXT_RUN,
    ),
    (
        (
            "Could not connect to the endpoint URL",
            "Connection refused",
            "EndpointConnectionError",
            "Connection was closed",
            "Failed to connect",
            "Couldn't connect to server",
            "curlCode: 7",
            "Read timeout on endpoint",
            "ConnectTimeoutError",
        ),
        "the S3 store could not be reached (AWS_ENDPOINT_URL_S3, credentials and network "
        "are worth a look). Run again once it is back. " + NEXT_RUN,
    ),
    (
        ("Permission denied", "Errno 13", "AccessDenied"),
        "permission denied writing to the lake or the home folder: the pipeline's user needs "
        "to own them. " + NEXT_RUN,
    ),
    (("LeaseBusy",), None),  # its own message says who holds the month
)


def _chain(error) -> Iterator[tuple[str, str]]:
    """(class name, message) of an error and what caused it: a Python exception or
    Dagster's SerializableErrorInfo."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, BaseException):
            yield type(error).__name__, str(error)
            error = error.__cause__ or error.__context__
        else:
            yield error.cls_name, error.message or ""
            error = error.cause or error.context


def explain(error) -> str:
    """An error (a Python exception, or a failed step's SerializableErrorInfo), in words."""
    chain = list(_chain(error))
    text = " ".join(f"{name}: {message}" for name, message in chain)
    for needles, words in KNOWN:
        if any(n in text for n in needles):
            if words is None:
                return next(m.strip() for name, m in chain if name == needles[0])
            return words
    name, message = chain[-1]
    first = message.strip().splitlines()[0] if message.strip() else ""
    return f"{name}: {first}"


def failure_words(result: dg.ExecuteInProcessResult | JobExecutionResult) -> list[str]:
    """Each failed step of a run (other than a check holding a delivery back), explained."""
    words = []
    for event in result.all_events:
        if event.event_type_value != "STEP_FAILURE":
            continue
        error = event.step_failure_data.error
        if error is None or error.cls_name == CHECK_FAILED:
            continue
        words.append(f"{event.step_key}: {explain(error)}")
    return words
