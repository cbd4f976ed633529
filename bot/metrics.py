"""Prometheus metrics (prometheus-client), served at /metrics."""

from prometheus_client import Counter, Histogram

INBOX_ACCEPTED = Counter("touchpoint_inbox_accepted_total", "Webhook events stored in the inbox", ["channel"])
INBOX_DUPLICATES = Counter("touchpoint_inbox_duplicates_total", "Redelivered webhook events ignored", ["channel"])
WEBHOOK_REJECTED = Counter("touchpoint_webhook_rejected_total", "Webhook requests rejected", ["channel", "reason"])
SENDS = Counter("touchpoint_sends_total", "Outbound send attempts by outcome", ["channel", "status"])
TURN_SECONDS = Histogram("touchpoint_turn_seconds", "Time to handle one inbound event", ["channel"])
