"""The bridge between the job store, Ray and ascl: the dispatcher/monitor and the worker entrypoint."""
