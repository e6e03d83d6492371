"""The batch scheduler: cron schedules, run history in ``ops.job_run``, locking and retries.

``config`` reads ``conf/schedules.toml``, ``planner`` computes fire times and periods, ``runs``
keeps the history and locks in PostgreSQL, ``executor`` runs ``spark-submit.sh`` processes and
``scheduler`` ties them together in :class:`~chillflow.scheduler.scheduler.BatchScheduler`.
"""
