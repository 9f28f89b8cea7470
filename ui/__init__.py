"""Gradio web UI for the detection service. It talks to a running `detector serve` over HTTP only (no model, no
`detector.runtime` import), so it can run on any machine that can reach the API."""
