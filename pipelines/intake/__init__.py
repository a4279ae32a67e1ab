"""Intake: from the drop zone into the landing area. Taking each file once, reading every
agreed format and layout, manifests, pseudonymising identifiers on landing."""
