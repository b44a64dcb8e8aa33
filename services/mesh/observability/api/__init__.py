"""The observability service's servicers: ObservabilityService, AnalyticsService and the OTLP
trace receiver."""
