"""What watches the served model and the service: metrics, drift, shadow scoring, the inbox, tracing."""
