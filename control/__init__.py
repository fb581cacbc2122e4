"""The control plane: dispatch (claim and submit to Ray), reconciliation (Ray and MLflow brought in
line with the database), model registration, and the wiring of `ascl serve`. Never imports torch."""
