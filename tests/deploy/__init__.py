"""The deployment (deploy/): Terraform invariants, the checks in deploy/checks/, the state
machines rendered and run locally (deploy/asl_local.py)."""
