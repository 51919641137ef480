"""What the gateway shows of itself: Prometheus metrics (metrics), W3C traces carried through
envelopes and reply events (tracing), logs with the task in every line (logs), and the wiring of
the first two into an app from its `observability` settings (wiring)."""
