"""The observability service: traces (an OTLP receiver), events, logs."""
