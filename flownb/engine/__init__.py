"""Running flows: the scheduler, retry and timeout policies, run handles, resume."""
