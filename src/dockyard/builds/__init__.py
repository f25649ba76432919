"""Pure logic of builds: push webhooks (signature, parsing), Dockerfile base images, the queue
plan. No I/O (contract `stacks-pure` in .importlinter)."""
