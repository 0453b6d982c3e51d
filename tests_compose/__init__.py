"""`make test-compose`: the Dockerfile and docker-compose.yml run for real (kept out of `make test`)."""
