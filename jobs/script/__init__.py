"""The [script] step's payload: a user's own command, once per task, with the shards staged and requeue passed on."""
