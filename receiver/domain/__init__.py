"""The pure domain: payloads, errors, redaction, URL and evidence rules; no I/O library."""
