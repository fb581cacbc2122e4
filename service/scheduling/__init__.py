"""Queue planning as pure functions over plain data: who runs next (priority, fair share between
users, aging), where a job's workers fit, which limits hold it back, and when a waiting job should
start. The dispatcher claims by the plan; the API explains every waiting job with the same plan."""
