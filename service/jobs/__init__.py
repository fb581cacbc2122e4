"""The job store: states, the one transition helper, and every query about jobs. No FastAPI here."""
