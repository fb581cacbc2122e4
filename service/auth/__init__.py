"""Who may do what: principals and roles, API tokens (stored hashed), an optional OIDC/JWT verifier,
and the access policy the routes apply. Nothing here knows HTTP."""
