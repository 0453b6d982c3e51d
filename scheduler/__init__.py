"""The scheduler process: APScheduler jobs run by exactly one leader among any number of scheduler processes.

Started as `python -m scheduler` (by `pooler up` or `pooler scheduler`). Job logic lives in the core
(pooler.services.refresh, usage_poll, housekeeping); this package only elects a leader and fires jobs.
"""
