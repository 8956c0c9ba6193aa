"""The Celery task names, written once: the tasks register under them, senders send to them."""

PLAN = "dinoseek.plan"  # plan a chunked job (cpu queue)
CHUNK = "dinoseek.chunk"  # embed one chunk (gpu queue)
RUN_JOB = "dinoseek.run_job"  # run a job that is not chunked, such as a duplicate scan (cpu queue)
EMBED_QUERY = "dinoseek.embed_query"  # embed a query picture (gpu queue)
