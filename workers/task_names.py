"""The Celery task names, written once: the tasks register under them, senders send to them."""

PLAN = "dinoseek.plan"  # plan a chunked job (cpu queue)
CHUNK = "dinoseek.chunk"  # embed one chunk (gpu queue)
RUN_JOB = "dinoseek.run_job"  # run a job that is not chunked, or plan one in pieces, such as a duplicate scan (cpu queue)
RUN_PIECE = "dinoseek.run_piece"  # run one piece of such a job: a duplicate scan's chunk of pairs (cpu queue)
EMBED_QUERY = "dinoseek.embed_query"  # embed a query picture (gpu queue)
